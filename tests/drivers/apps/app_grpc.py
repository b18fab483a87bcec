"""grpcio, unmodified: a unary call to a server that answers after a delay. The channel is
made at init, as Google Cloud clients made at module level do."""

from __future__ import annotations

import os

import grpc
from overlap_meter import answer, waiting

CHANNEL = grpc.insecure_channel(os.environ["GRPC_TARGET"])
SLOW = CHANNEL.unary_unary("/matrix.Slow/Wait")  # raw bytes in and out: no generated code


def handler(event, context):
    with waiting():
        reply = SLOW(str(event["seconds"]).encode(), timeout=30)
    return answer(reply=reply.decode())
