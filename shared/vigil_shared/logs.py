"""JSON-lines logging on stderr for every process, with the request id carried along."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_configured = False


# json.dumps(entry, default=str) builds an encoder per call; one kept encoder writes the same text
_ENCODE = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str):
        super().__init__()
        self.process_name = process
        self._second: tuple[int, str] = (-1, "")  # the last whole second logged and its text

    def _timestamp(self, created: float) -> str:
        """``datetime.fromtimestamp(created, UTC).isoformat()`` with ``Z``: the whole second's text kept."""
        whole = int(created)
        second, text = self._second
        if whole != second:
            text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (whole, text)
        micros = round((created - whole) * 1_000_000)
        if micros >= 1_000_000:  # rounded up to the next second: as datetime rounds it
            return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
        return f"{text}.{micros:06d}Z" if micros else f"{text}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "process": self.process_name,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({key: value for key, value in record.__dict__.items() if key not in _STANDARD and key[:1] != "_"})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODE(entry)


def log_fields(logger: logging.Logger, message: str, fields: dict[str, object], level: int = logging.INFO) -> None:
    """One line of ``fields`` (a request's access line), without what ``logger.info(..., extra=...)`` does
    besides: the caller lookup (``findCaller`` walks the stack for a file and line a JSON line never
    shows), and nothing at all when the level is off."""
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "", 0, message, (), None, extra=fields))


def configure_logging(level: str = "INFO", process: str = "vigil") -> None:
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # A record's pid (``os.getpid()``, a system call per log line) is never written: not a JSON field
    # (``_STANDARD``), and no handler but this one is installed.
    logging.logProcesses = False
    for noisy in ("urllib3", "amqp", "kombu", "celery.worker.strategy", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    _configured = True
