"""multiprocessing, unmodified: child processes do the waiting, the handler waits for them.

Each invocation starts its own processes (as a legacy handler does); the children sleep for
``seconds``, so an invocation spends that long in the Pool/Queue/Pipe/join wait.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from overlap_meter import answer, waiting


def square(number: int, seconds: float) -> int:
    time.sleep(seconds)
    return number * number


def square_args(args: tuple[int, float]) -> int:
    return square(*args)


def _put_later(queue, seconds: float) -> None:
    time.sleep(seconds)
    queue.put(os.getpid())


def _send_later(connection, seconds: float) -> None:
    time.sleep(seconds)
    connection.send(os.getpid())


def _pool(kind: str, seconds: float) -> list[int]:
    work = [(number, seconds) for number in range(4)]
    if kind == "map":
        with multiprocessing.Pool(2) as pool:
            return pool.map(square_args, work)
    if kind == "imap":
        with multiprocessing.Pool(2) as pool:
            return list(pool.imap(square_args, work))
    if kind == "apply_async":
        with multiprocessing.Pool(2) as pool:
            pending = [pool.apply_async(square, item) for item in work]
            return [result.get(timeout=30) for result in pending]
    # Without a context manager: close() and join() as older code does.
    pool = multiprocessing.Pool(2)
    try:
        return pool.map(square_args, work)
    finally:
        pool.close()
        pool.join()


def _one_process(kind: str, seconds: float) -> list[int]:
    if kind == "queue":
        queue = multiprocessing.Queue()
        child = multiprocessing.Process(target=_put_later, args=(queue, seconds))
        child.start()
        got = queue.get(timeout=30)
        child.join()
    elif kind == "pipe":
        ours, theirs = multiprocessing.Pipe()
        child = multiprocessing.Process(target=_send_later, args=(theirs, seconds))
        child.start()
        got = ours.recv()
        child.join()
    else:  # join
        child = multiprocessing.Process(target=time.sleep, args=(seconds,))
        child.start()
        child.join()
        got = child.pid
    return [got == child.pid, child.exitcode]


def handler(event, context):
    kind, seconds = event["kind"], event["seconds"]
    with waiting():
        if kind in ("queue", "pipe", "join"):
            results = _one_process(kind, seconds)
        else:
            results = _pool(kind, seconds)
    return answer(results=results, pid=os.getpid())
