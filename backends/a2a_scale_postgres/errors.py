"""Errors of the PostgreSQL backend."""

from __future__ import annotations

from a2a_scale import EventGapError


class EventLogTrimmedError(EventGapError):
    """A subscriber fell behind the retained event log of its task.

    The events it has not seen were trimmed (see
    ``A2A_SCALE_POSTGRES_MAX_EVENTS_PER_TASK``), so the stream ends with this
    error rather than silently skipping them. It is an `EventGapError`, as
    on every backend.
    """

    def __init__(self, task_id: str, position: int, first_kept: int) -> None:
        super().__init__(
            task_id,
            position=position,
            reason=(
                f'the event log no longer holds them (the oldest kept is {first_kept})'
            ),
        )
        self.first_kept = first_kept


def row_key(schema: str, table: str, **columns: object) -> str:
    """Names a row for an operator: ``schema.table(column=value, ...)``."""
    shown = ', '.join(f'{name}={str(value)[:200]!r}' for name, value in columns.items())
    return f'{schema}.{table}({shown})'
