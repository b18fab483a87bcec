"""The multiprocessing waits, in a fresh patched interpreter: they yield to other greenlets.

A ticker greenlet counts how often the hub ran while a greenlet waited; a wait that blocked
the hub would leave it at (almost) zero.
"""

from __future__ import annotations

from tests.support import run_python

PRELUDE = """
import json, sys
from gevent import monkey
monkey.patch_all()
from lmi_gevent.integrations import multiprocessing as multiprocessing_waits
multiprocessing_waits.install()
import gevent, multiprocessing, time

ticks = 0
def ticker():
    global ticks
    while True:
        ticks += 1
        gevent.sleep(0.01)
gevent.spawn(ticker)
"""


def test_a_taken_lock_is_waited_for_cooperatively_and_times_out() -> None:
    result = run_python(PRELUDE + """
lock = multiprocessing.Lock()
lock.acquire()
started = time.monotonic()
got = lock.acquire(timeout=0.3)                  # held by "another greenlet": times out
waited = time.monotonic() - started
gevent.spawn_later(0.2, lock.release)
got_later = gevent.spawn(lock.acquire).get(timeout=5)  # released meanwhile: taken
print(json.dumps({"got": got, "waited": waited, "got_later": got_later, "ticks": ticks,
                  "nonblocking": lock.acquire(False)}))
""")
    assert result["got"] is False and result["waited"] >= 0.3
    assert result["got_later"] is True
    assert result["nonblocking"] is False  # still held by the greenlet that took it
    assert result["ticks"] >= 20  # ~50 in 0.5 s when the hub ran; ~1 if the waits blocked it


def test_pipe_and_queue_waits_let_other_greenlets_run() -> None:
    result = run_python(PRELUDE + """
ours, theirs = multiprocessing.Pipe()
queue = multiprocessing.Queue()
gevent.spawn_later(0.3, theirs.send, {"sent": 1})
received = ours.recv()
before = ticks
gevent.spawn_later(0.3, queue.put, 42)
got = queue.get(timeout=5)
print(json.dumps({"received": received, "got": got, "ticks_pipe": before,
                  "ticks_queue": ticks - before}))
""")
    assert result["received"] == {"sent": 1} and result["got"] == 42
    assert result["ticks_pipe"] >= 10 and result["ticks_queue"] >= 10


def test_a_large_message_crosses_a_pipe_in_both_directions() -> None:
    # Bigger than a pipe's buffer: the writer must wait for room without blocking the reader.
    result = run_python(PRELUDE + """
reader, writer = multiprocessing.Pipe(duplex=False)
payload = b"x" * (1 << 20)
sender = gevent.spawn(writer.send_bytes, payload)
received = reader.recv_bytes()
sender.get(timeout=5)
print(json.dumps({"same": received == payload}))
""")
    assert result["same"] is True


def test_a_forked_child_waits_natively_and_leaves_the_runtime_behind() -> None:
    # In the child, the parent's greenlets (here: the ticker) must never run.
    result = run_python(PRELUDE + """
import os
def child(connection):
    before = ticks
    time.sleep(0.2)
    connection.send({"ticks_in_child": ticks - before, "pid": os.getpid()})
ours, theirs = multiprocessing.Pipe()
process = multiprocessing.Process(target=child, args=(theirs,))
process.start()
answer = ours.recv()
process.join()
print(json.dumps({**answer, "exitcode": process.exitcode, "parent": os.getpid()}))
""")
    assert result["exitcode"] == 0 and result["pid"] != result["parent"]
    assert result["ticks_in_child"] == 0
