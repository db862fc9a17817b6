"""Logging set-up for the ``vigil`` command: a level and a format (``text`` for people, ``json`` for log
pipelines), taken from ``--log-level`` / ``--log-format``, else ``VIGIL_LOG_LEVEL`` / ``VIGIL_LOG_FORMAT``
(the chart's ConfigMap sets both), else the command's default.

JSON lines carry ``time``, ``level``, ``logger`` and ``message``, plus the structured fields a call passes
with ``extra=`` (:data:`FIELDS`: the agent, its rollout, the decision's id, action and version), and the
traceback as ``exception``. Nothing of a conversation is ever logged: the fields are identifiers.

>>> import io, logging
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> handler.setFormatter(JsonFormatter())
>>> log = logging.getLogger("vigil.doctest")
>>> log.addHandler(handler); log.propagate = False
>>> log.warning("rolled back %s", "v2", extra={"agent": "support-bot", "decision": "3f2a"})
>>> doc = json.loads(stream.getvalue())
>>> doc["level"], doc["message"], doc["agent"], doc["decision"]
('WARNING', 'rolled back v2', 'support-bot', '3f2a')
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Literal

__all__ = ["FIELDS", "FORMATS", "LEVELS", "JsonFormatter", "configure"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
#: The structured fields a log call may pass with ``extra=``; JSON lines carry them as keys.
FIELDS = ("agent", "rollout", "decision", "action", "version", "topic", "partition", "offset")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (UTC time with milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str | None = None, fmt: str | None = None, default_level: str = "INFO") -> None:
    """Set the root logger's level and format; an unknown level or format is refused with its option named.

    >>> configure("LOUD")
    Traceback (most recent call last):
    ValueError: --log-level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'
    """
    level_name = (level or os.environ.get("VIGIL_LOG_LEVEL") or default_level).upper()
    if level_name not in LEVELS:
        raise ValueError(f"--log-level: expected one of {', '.join(LEVELS)}, got {level_name!r}")
    fmt_name = (fmt or os.environ.get("VIGIL_LOG_FORMAT") or "text").lower()
    if fmt_name not in FORMATS:
        raise ValueError(f"--log-format: expected one of {', '.join(FORMATS)}, got {fmt_name!r}")
    handler = logging.StreamHandler()
    kind: Literal["text", "json"] = "json" if fmt_name == "json" else "text"
    handler.setFormatter(JsonFormatter() if kind == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_name)
    # aiokafka logs every reconnection at INFO: below WARNING only when vigil itself is asked for DEBUG
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if level_name == "DEBUG" else logging.WARNING)
