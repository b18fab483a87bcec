"""Log records in Lambda's text and JSON formats, written to stdout or the telemetry fd.

Every record carries the request id (and tenant id) of the invocation that emitted it, read
from the context variables in :mod:`lmi_gevent.invocation.context` — never from a global, so records of
concurrent invocations cannot be mislabelled.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

from ..config import LOG_LEVELS
from ..runtime_api.errors import OWN_STACKLESS_ERRORS
from ..runtime_api.marshal import to_json
from .context import current_ids

TYPE_CHECKING = False  # typing.TYPE_CHECKING; typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any, Callable, TextIO

_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
_ERROR_LINE_JOIN = "\r"  # one CloudWatch event per error: the platform splits records on \n
_INDENT = "\u00a0"  # leading spaces of traceback lines become no-break spaces, as CloudWatch trims

# Telemetry frame types (docs/protocol.md): base + 8 per level step, JSON = text - 1.
_TEXT_FRAME = {logging.NOTSET: 0xA55A0003, logging.DEBUG: 0xA55A000B, logging.INFO: 0xA55A000F,
               logging.WARNING: 0xA55A0013, logging.ERROR: 0xA55A0017,
               logging.CRITICAL: 0xA55A001B}
_JSON_FRAME = {level: frame - 1 for level, frame in _TEXT_FRAME.items()}

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "aws_request_id", "tenant_id", "taskName"}


def normalised_level(levelno: int) -> int:
    """Custom levels fold onto the standard ones (15 -> DEBUG), as the platform only knows those."""
    return min(50, max(0, levelno)) // 10 * 10


class StreamSink:
    """Writes records to a text stream (stdout); the platform splits them on newlines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str, level: int | None = None) -> None:
        self.stream.write(text)

    def write_error(self, lines: list[str]) -> None:
        self.stream.write(_ERROR_LINE_JOIN.join(lines) + "\n")

    def close(self) -> None:
        pass


class FramedSink:
    """Writes each record as one frame on the telemetry fd: type, length, µs timestamp, message.

    One ``os.write`` per frame keeps frames whole; the fd is blocking, so a write never yields
    to another greenlet half-way.
    """

    def __init__(self, fd: int, json_format: bool, per_level: bool) -> None:
        import struct  # only where the platform gives a telemetry fd

        self._header = struct.Struct(">IIQ")
        self.fd = fd
        self.frames = _JSON_FRAME if json_format else _TEXT_FRAME
        self.per_level = per_level
        os.set_blocking(fd, True)

    def _frame_type(self, level: int | None) -> int:
        if level is None or not self.per_level:
            return _TEXT_FRAME[logging.NOTSET]
        return self.frames.get(normalised_level(level), self.frames[logging.NOTSET])

    def write(self, text: str, level: int | None = None) -> None:
        self._write(text, self._frame_type(level))

    def write_error(self, lines: list[str]) -> None:
        self._write("\n".join(lines), self.frames[logging.ERROR])

    def _write(self, text: str, frame_type: int) -> None:
        data = text.encode("utf-8")
        header = self._header.pack(frame_type, len(data), time.time_ns() // 1000)
        view = memoryview(header + data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current invocation's request and tenant ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id, record.tenant_id = current_ids()
        record.aws_request_id = request_id or ""
        return True


class TextFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S")


class JsonFormatter(logging.Formatter):
    """One JSON object per record with the fields Lambda's JSON log format defines."""

    converter = staticmethod(time.gmtime)
    _encode: Callable[[Any], str]  # set by the first instance: json only for JSON logs

    def __init__(self) -> None:
        super().__init__()
        import json

        JsonFormatter._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    def format(self, record: logging.LogRecord) -> str:
        level = normalised_level(record.levelno)
        message = (record.msg if isinstance(record.msg, dict) and not record.args
                   else record.getMessage())
        fields: dict[str, Any] = {
            "timestamp": self.formatTime(record, _TIMESTAMP),
            "level": logging.getLevelName(level),
            "message": message,
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None),
        }
        tenant = getattr(record, "tenant_id", None)
        if tenant is not None:
            fields["tenantId"] = tenant
        if record.exc_info and record.exc_info[0] is not None:
            kind, value, tb = record.exc_info
            fields.update(stackTrace=traceback.format_tb(tb), errorType=kind.__name__,
                          errorMessage=str(value),
                          location=f"{record.pathname}:{record.funcName}:{record.lineno}")
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in fields and value is not None:
                fields[key] = value
        return self._encode({k: v for k, v in fields.items() if v is not None}) + "\n"


class LambdaLogHandler(logging.Handler):
    """Sends formatted records to the sink, one write per record."""

    def __init__(self, sink: StreamSink | FramedSink) -> None:
        super().__init__()
        self.sink = sink
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record), record.levelno)
        except Exception:  # noqa: BLE001 - logging must never break an invocation
            self.handleError(record)


class Unbuffered:
    """A stream proxy that flushes on every write, so output is never held in a buffer."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._stream.flush()
        return written

    def writelines(self, lines: Any) -> None:
        self._stream.writelines(lines)
        self._stream.flush()


class FunctionLog:
    """The function's log: where records and unhandled errors go, in the configured format."""

    def __init__(self, sink: StreamSink | FramedSink, json_format: bool) -> None:
        self.sink = sink
        self.json_format = json_format

    def unhandled_error(self, body: dict[str, Any]) -> None:
        """Log an error body the way the official client logs unhandled errors."""
        if self.json_format:
            stamp = time.strftime(_TIMESTAMP, time.gmtime())
            lines = [to_json({"timestamp": stamp, "level": "ERROR", **body})]
        else:
            lines = _error_lines(body)
        self.sink.write_error(lines)


def _error_lines(body: dict[str, Any]) -> list[str]:
    head = "[ERROR]"
    if body.get("errorType"):
        head += " " + body["errorType"]
        if body.get("errorMessage"):
            head += ":"
    if body.get("errorMessage"):
        head += " " + body["errorMessage"]
    lines = [head]
    if body.get("stackTrace") or body.get("errorType") not in OWN_STACKLESS_ERRORS:
        lines.append("Traceback (most recent call last):")
    for entry in body.get("stackTrace") or []:
        if entry == "":
            lines.append("")
        for line in entry.splitlines():
            stripped = line.lstrip(" ")
            lines.append(_INDENT * (len(line) - len(stripped)) + stripped)
    return lines


def connect_log_socket(path: str) -> None:
    """Route stdout and stderr to the Managed Instances log socket (one connection)."""
    import socket  # only in Managed Instances, and then gevent has imported it already

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        for fd in (sys.stdout.fileno(), sys.stderr.fileno()):
            os.dup2(conn.fileno(), fd)
            # A gevent socket is non-blocking; fds 1 and 2 must block so print() never fails
            # with EAGAIN and never yields half-way through a line.
            os.set_blocking(fd, True)
    finally:
        conn.close()


def setup(*, log_format: str, log_level: str | None, telemetry_fd: int | None,
          log_socket: str | None) -> FunctionLog:
    """Configure the root logger and the streams; return the function's log."""
    if log_socket:
        connect_log_socket(log_socket)
    sys.stdout = Unbuffered(sys.stdout)
    sys.stderr = Unbuffered(sys.stderr)
    json_format = log_format == "JSON"
    sink: StreamSink | FramedSink
    if telemetry_fd is not None:
        os.environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
        sink = FramedSink(telemetry_fd, json_format, per_level=json_format or bool(log_level))
    else:
        sink = StreamSink(sys.stdout)  # type: ignore[arg-type]
    handler = LambdaLogHandler(sink)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    if log_level in LOG_LEVELS:
        root.setLevel(log_level)
    elif log_level:
        logging.getLogger("lmi_gevent").warning(
            "AWS_LAMBDA_LOG_LEVEL=%r is not a level (TRACE, DEBUG, INFO, WARN, ERROR, FATAL); "
            "ignored, as the official client ignores it", log_level)
    return FunctionLog(sink, json_format)


# --- records from a monitor thread (no logging locks, no hub) ---------------------------------------

def write_without_hub(level: int, message: str, request_id: str | None,
                      fields: dict[str, Any] | None = None) -> None:
    """Write one record in the function's log format with a single ``os.write``, from any thread.

    For lmi-gevent's monitor threads, which must report while a handler holds the event loop:
    logging's handler locks are gevent locks then, and a buffered stream's lock may be held by
    the blocked thread, so neither may be touched. On stdout a multi-line text message is
    joined with ``\\r`` to stay one event, as the stall report does.
    """
    handler = next((h for h in list(logging.getLogger().handlers)
                    if isinstance(h, LambdaLogHandler)), None)
    name = logging.getLevelName(normalised_level(level))
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    sink = handler.sink if handler is not None else None
    if handler is not None and isinstance(handler.formatter, JsonFormatter):
        record = {"timestamp": stamp[:-5] + "Z", "level": name, "message": message,
                  "logger": "lmi_gevent", "requestId": request_id, **(fields or {})}
        text = JsonFormatter._encode({k: v for k, v in record.items() if v is not None}) + "\n"
    else:
        # A frame keeps its newlines; on stdout the platform would split the record at them.
        flat = message if isinstance(sink, FramedSink) else message.replace("\n", _ERROR_LINE_JOIN)
        text = f"[{name}]\t{stamp}\t{request_id or ''}\t{flat}\n"
    if isinstance(sink, FramedSink):
        sink.write(text, level)  # one os.write per frame
        return
    fd = sink.stream.fileno() if isinstance(sink, StreamSink) else 2
    view = memoryview(text.encode("utf-8"))
    while view:
        view = view[os.write(fd, view):]
