"""One invocation: loading the handler, the ``context`` object and the per-invocation
context variables, the function's log, and :class:`~lmi_gevent.invocation.invoker.Invoker`,
the one path every invocation takes in both serving modes.

Internal: nothing here is public API.
"""
