"""A handler module that imports nothing: a cold start measures only the runtime's own cost."""


def handler(event, context):  # type: ignore[no-untyped-def]
    return {"ok": True}
