"""Structured logs: a JSON formatter and the trace id on every record.

a2a-scale logs under one namespace per component: ``a2a_scale.<component>``
for the core (``a2a_scale.handler``, ``a2a_scale.memory``,
``a2a_scale.serve``, ...) and ``a2a_scale_<backend>`` for each backend
plugin (``a2a_scale_redis``, ``a2a_scale_aws``, ``a2a_scale_postgres``). No
record carries a message body.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

from a2a_scale.errors import ConfigurationError
from a2a_scale.telemetry.switch import enabled

LOG_FORMAT_ENV = 'A2A_SCALE_LOG_FORMAT'
"""``text`` (the default) or ``json``; applied by ``a2a-scale serve``."""

LOGGERS = ('a2a_scale', 'a2a_scale_redis', 'a2a_scale_aws', 'a2a_scale_postgres')
"""The top-level loggers of a2a-scale and its backend plugins."""

_NO_TRACE = ('', '')


def component_of(logger_name: str) -> str:
    """The component a logger belongs to: ``redis``, ``handler``, ``serve``..."""
    head, _, rest = logger_name.partition('.')
    if head.startswith('a2a_scale_'):
        return head.removeprefix('a2a_scale_')
    if head == 'a2a_scale' and rest:
        return rest.partition('.')[0]
    return head


def current_trace() -> tuple[str, str]:
    """The current trace and span ids as hex, or empty strings outside a span."""
    if not enabled():
        return _NO_TRACE
    from opentelemetry import trace  # noqa: PLC0415

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return _NO_TRACE
    return format(context.trace_id, '032x'), format(context.span_id, '016x')


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to every record (empty outside a span).

    Attach it to a handler; formats can then use ``%(trace_id)s``.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        if not hasattr(record, 'trace_id'):
            record.trace_id, record.span_id = current_trace()
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line.

    Keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``component``,
    ``message``, ``trace_id`` and ``span_id`` when inside a span, and
    ``exception`` when the record has one.
    """

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        trace_id = getattr(record, 'trace_id', None)
        span_id = getattr(record, 'span_id', None)
        if trace_id is None:
            trace_id, span_id = current_trace()
        out: dict[str, Any] = {
            'time': datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec='milliseconds'
            ),
            'level': record.levelname,
            'logger': record.name,
            'component': component_of(record.name),
            'message': record.getMessage(),
        }
        if trace_id:
            out['trace_id'] = trace_id
            out['span_id'] = span_id
        if record.exc_info:
            out['exception'] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def log_format() -> str:
    """``A2A_SCALE_LOG_FORMAT``: ``text`` or ``json``.

    Raises:
        ConfigurationError: naming the variable, for any other value.
    """
    value = os.environ.get(LOG_FORMAT_ENV, 'text').strip().lower() or 'text'
    if value not in ('text', 'json'):
        raise ConfigurationError(
            f'Invalid {LOG_FORMAT_ENV}={value!r}: use text or json',
            variable=LOG_FORMAT_ENV,
        )
    return value


def configure_logging(
    level: int = logging.INFO,
    *,
    text_format: str = '%(asctime)s %(levelname)s %(name)s: %(message)s',
    stream: IO[str] | None = None,
    json_format: bool | None = None,
) -> logging.Handler:
    """Sends a2a-scale's loggers (core and backends) to `stream` (stderr).

    Args:
        level: The level of a2a-scale's loggers.
        text_format: The `logging` format used unless the format is JSON.
        stream: Where to write; defaults to stderr.
        json_format: JSON lines if true; `None` reads ``A2A_SCALE_LOG_FORMAT``.

    Returns:
        The handler installed (with a `TraceContextFilter`).
    """
    if json_format is None:
        json_format = log_format() == 'json'
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(
        JsonFormatter() if json_format else logging.Formatter(text_format)
    )
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler
