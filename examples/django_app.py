"""A one-file Django app behind any Lambda HTTP source, served by lmi_gevent.http.wsgi_handler.

Run it behind a local Function URL, then curl or open http://127.0.0.1:8080/:
    lmi-gevent local examples/django_app.handler --function-url --concurrency 8
"""

import os

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    # Set DJANGO_SECRET_KEY in the function's environment; the fallback is for local runs only.
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "local-example-only-not-a-secret"),
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    APPEND_SLASH=True,
    USE_TZ=True,
)
django.setup()


def index(request):
    response = HttpResponse("<h1>Hello from Django on Lambda</h1>")
    response.set_cookie("flavour", "django")
    response.set_cookie("theme", "dark")
    return response


def item(request, number):
    return JsonResponse({"item": number, "path": request.path, "full_path": request.get_full_path(),
                         "secure": request.is_secure(), "remote_addr": request.META.get("REMOTE_ADDR"),
                         "query": dict(request.GET.lists())})


urlpatterns = [path("", index), path("items/<int:number>/", item)]

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after settings.configure()

from lmi_gevent.http import wsgi_handler  # noqa: E402

application = get_wsgi_application()
handler = wsgi_handler(application)
