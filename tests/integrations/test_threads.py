"""Work a handler fans out starts in a copy of its creator's context (lmi_gevent.integrations.threads).

The whole path (patched process, overlapping invocations) is in
tests/integration/test_concurrent.py; these check each piece with real threads and
unpatched gevent, where the stdlib would start them in an empty context.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import types

import gevent
import gevent.pool

from lmi_gevent.integrations import threads as inherit

VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_inherit", default=None)


def run_as(value: str, fn):  # type: ignore[no-untyped-def]
    """Call ``fn`` in a fresh context where VAR is ``value``."""
    def inner():  # type: ignore[no-untyped-def]
        VAR.set(value)
        return fn()
    return contextvars.Context().run(inner)


def test_a_started_thread_sees_the_starters_values_also_with_its_own_run() -> None:
    class Plain(threading.Thread):
        pass

    class OwnRun(threading.Thread):
        def run(self) -> None:
            seen.append(("own", VAR.get()))

    for cls in (Plain, OwnRun):
        cls.start = inherit._start_in_callers_context(threading.Thread.start)  # type: ignore[method-assign]
    seen: list[tuple[str, str | None]] = []

    def start_both() -> None:
        worker = Plain(target=lambda: seen.append(("plain", VAR.get())))
        worker.start()
        worker.join()
        own = OwnRun()
        own.start()
        own.join()

    run_as("a", start_both)
    assert seen == [("plain", "a"), ("own", "a")]
    bare = threading.Thread(target=lambda: seen.append(("bare", VAR.get())))
    run_as("b", lambda: (bare.start(), bare.join()))
    assert seen[-1] == ("bare", None)  # what the stdlib does without the wrapper


def test_a_shared_executor_runs_each_item_in_its_submitters_context() -> None:
    class Executor(concurrent.futures.ThreadPoolExecutor):
        pass

    module = types.SimpleNamespace(ThreadPoolExecutor=Executor)
    inherit._patch_executor(module)  # type: ignore[arg-type]
    wrapped = Executor.submit
    inherit._patch_executor(module)  # type: ignore[arg-type]
    assert Executor.submit is wrapped  # once only
    with Executor(1) as executor:
        # The worker thread is started by the first submitter ("a"); later items are others'.
        got = [run_as(value, lambda: executor.submit(VAR.get).result()) for value in "abc"]
        mapped = run_as("d", lambda: list(executor.map(lambda _: VAR.get(), range(2))))
    assert got == ["a", "b", "c"] and mapped == ["d", "d"]


def test_inheriting_greenlets_see_their_spawners_values_and_keep_their_own() -> None:
    greenlet_class = inherit.inheriting(gevent.Greenlet)
    assert greenlet_class.__name__ == "Greenlet" and issubclass(greenlet_class, gevent.Greenlet)

    def child() -> str | None:
        value = VAR.get()
        VAR.set("changed in the child")
        return value

    def spawn_and_check() -> tuple[str | None, str | None]:
        got = greenlet_class.spawn(child).get()
        return got, VAR.get()  # the child's set() stayed in the child's copy

    assert run_as("a", spawn_and_check) == ("a", "a")
    assert run_as("a", lambda: gevent.Greenlet.spawn(VAR.get).get()) is None  # gevent alone


def test_inheriting_imap_drives_pool_map_in_the_callers_context() -> None:
    pool = gevent.pool.Pool(2)
    pool.greenlet_class = inherit.inheriting(gevent.Greenlet)
    # Without an inheriting IMap, the greenlet that feeds map() starts empty and so would
    # the workers it spawns.
    assert run_as("a", lambda: pool.map(lambda _: VAR.get(), range(3))) == [None] * 3
    imap_class = inherit.inheriting(gevent.pool.IMap)
    feeder = run_as("b", lambda: imap_class.spawn(lambda _: VAR.get(), iter(range(3)),
                                                   spawn=pool.spawn))
    assert list(feeder) == ["b", "b", "b"]
