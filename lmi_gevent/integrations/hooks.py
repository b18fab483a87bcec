"""Post-import hooks: adapt a library the moment the handler imports it, never importing it
ourselves. Every module of :mod:`lmi_gevent.integrations` installs its adaptation through
:func:`when_imported` (or :func:`applied`, which also records it for ``lmi-gevent check``).
"""

from __future__ import annotations

import logging
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

log = logging.getLogger("lmi_gevent")

# module name -> hook family, for each hook that has run (`lmi-gevent check` reports them)
APPLIED: dict[str, str] = {}


def applied(module: str, family: str, hook: Callable[[Any], Any]) -> None:
    """Run ``hook`` when ``module`` is imported (now, if it is) and note it in APPLIED."""
    def run(imported: Any) -> None:
        hook(imported)
        APPLIED[module] = family

    when_imported(module, run)


def when_imported(name: str, on_import: Callable[[ModuleType], object],
                  needs: str | None = None) -> None:
    """``on_import(module)`` now if ``name`` is imported (with its attribute ``needs``, for a
    package still importing itself), otherwise right after the handler imports it."""
    module = sys.modules.get(name)
    if module is not None and (needs is None or getattr(module, needs, None) is not None):
        on_import(module)
    else:
        PostImportHook(name, on_import).add()


class PostImportHook:
    """A ``sys.meta_path`` entry that calls ``on_import(module)`` right after ``name`` has
    been imported (its code ran without error), then removes itself.

    It finds nothing itself: it asks the finders after it, and wraps the loader they return
    so that the module, once executed, is handed to ``on_import``. The module sees its real
    loader in ``__loader__`` and ``__spec__.loader``.
    """

    def __init__(self, name: str, on_import: Callable[[ModuleType], object]) -> None:
        self.name = name
        self.on_import = on_import

    def add(self) -> None:
        if not any(isinstance(f, PostImportHook) and f.name == self.name for f in sys.meta_path):
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        spec = self._find_with_later_finders(fullname, path, target)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderThenHook(spec.loader, self)  # type: ignore[assignment]
        return spec

    def _find_with_later_finders(self, fullname: str, path: Sequence[str] | None,
                                 target: ModuleType | None) -> ModuleSpec | None:
        finders = sys.meta_path
        start = finders.index(self) + 1 if self in finders else 0
        for finder in list(finders[start:]):
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                return spec
        return None

    def imported(self, module: ModuleType) -> None:
        self.remove()
        try:
            self.on_import(module)
        except Exception:
            # Our hook must never break the handler's import: log, and let it block.
            log.exception("lmi-gevent could not adapt %s to concurrent mode after it was "
                          "imported; it runs unadapted.", self.name)


class _LoaderThenHook:
    """Runs the real loader, then the hook. Gone from the module before its code runs."""

    def __init__(self, loader: Any, hook: PostImportHook) -> None:
        self.loader = loader
        self.hook = hook

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Hand the real loader back first: importlib.resources, pkgutil and the package's own
        # code look at __loader__/__spec__.loader.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.hook.imported(module)
