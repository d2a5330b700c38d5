"""How the operator commands print: tables on a terminal, plain or JSON lines.

On a terminal the commands print coloured tables; piped, they print one
tab-separated line per row after a header line, or JSON with ``--json``.
Message parts and artifacts are never printed unless ``--bodies`` asks.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from a2a.types.a2a_pb2 import (
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from google.protobuf.json_format import MessageToDict
from rich.markup import escape
from rich.table import Table

from a2a_scale.tasks import status_timestamp_ns

if TYPE_CHECKING:
    from rich.console import Console

    from a2a_scale.ops import FeedEvent, OperatorTask, ReplicaInfo

_STATE_COLOURS = {
    'working': 'cyan',
    'submitted': 'cyan',
    'completed': 'green',
    'canceled': 'yellow',
    'failed': 'red',
    'rejected': 'red',
    'input-required': 'magenta',
    'auth-required': 'magenta',
}


def state_name(state: int) -> str:
    """``working`` for ``TASK_STATE_WORKING``; ``''`` when unspecified."""
    if not state:
        return ''
    try:
        name = TaskState.Name(state)
    except ValueError:
        return str(state)
    return name.removeprefix('TASK_STATE_').lower().replace('_', '-')


def parse_state(text: str) -> int:
    """The state named `text` (``working``, ``input-required``, ...).

    Raises:
        ValueError: Naming the valid states.
    """
    wanted = text.strip().upper().replace('-', '_').removeprefix('TASK_STATE_')
    valid = []
    for name, number in TaskState.items():
        if number == 0:
            continue
        short = name.removeprefix('TASK_STATE_')
        if short == wanted:
            return number
        valid.append(short.lower().replace('_', '-'))
    raise ValueError(f'unknown state {text!r}; one of: {", ".join(valid)}')


def iso(seconds: float | None) -> str | None:
    """An ISO 8601 UTC time with milliseconds, or `None`."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec='milliseconds')


def _task_time(task: Task) -> float | None:
    ns = status_timestamp_ns(task)
    return ns / 1e9 if ns is not None else None


def task_summary(found: OperatorTask, *, bodies: bool = False) -> dict[str, Any]:
    """A task as JSON: no message parts or artifacts unless `bodies`."""
    task = found.task
    summary: dict[str, Any] = {
        'id': task.id,
        'context_id': task.context_id,
        'state': state_name(task.status.state),
        'owner': found.owner,
        'version': found.version,
        'updated': iso(_task_time(task)),
        'messages': len(task.history),
        'artifacts': [
            {'artifact_id': a.artifact_id, 'name': a.name, 'parts': len(a.parts)}
            for a in task.artifacts
        ],
        'access': found.access,
    }
    if bodies:
        summary['task'] = MessageToDict(task)
    return summary


def _coloured_state(state: str) -> str:
    colour = _STATE_COLOURS.get(state, 'white')
    return f'[{colour}]{escape(state)}[/]'


def line(console: Console, text: str) -> None:
    """Writes `text` as is (no markup, wrapping or tab expansion) and a newline."""
    console.file.write(text + '\n')


def _plain(console: Console, header: list[str], rows: list[list[str]]) -> None:
    for row in [header, *rows]:
        line(console, '\t'.join(row))


def print_tasks(
    console: Console, tasks: list[OperatorTask], *, as_json: bool, title: str
) -> None:
    """Prints a listing: a table, tab-separated lines or JSON lines."""
    if as_json:
        for found in tasks:
            line(console, json.dumps(task_summary(found)))
        return
    header = ['TASK', 'STATE', 'OWNER', 'CONTEXT', 'VERSION', 'UPDATED']
    rows = [
        [
            f.task.id,
            state_name(f.task.status.state),
            f.owner,
            f.task.context_id,
            str(f.version),
            iso(_task_time(f.task)) or '',
        ]
        for f in tasks
    ]
    if not console.is_terminal:
        _plain(console, header, rows)
        return
    table = Table(title=title, box=None, padding=(0, 1), title_justify='left')
    for column in header:
        table.add_column(column.lower(), overflow='fold')
    for row in rows:
        row[5] = row[5][:19].replace('T', ' ')  # to the second, on a terminal
        table.add_row(
            *(_coloured_state(c) if i == 1 else escape(c) for i, c in enumerate(row))
        )
    console.print(table if rows else f'{escape(title)}: no tasks')


def print_task(
    console: Console,
    found: OperatorTask,
    *,
    running_on: str | None,
    bodies: bool,
    as_json: bool,
) -> None:
    """Prints one task: its fields, then its bodies only if asked."""
    summary = task_summary(found, bodies=bodies)
    summary['running_on'] = running_on
    if as_json:
        line(console, json.dumps(summary, indent=2))
        return
    task = found.task
    status_parts = len(task.status.message.parts)
    lines = [
        ('task', task.id),
        ('access', 'operator (every owner; not scoped to a caller)'),
        ('owner', found.owner),
        ('context', task.context_id),
        ('state', summary['state']),
        ('version', str(found.version)),
        ('updated', summary['updated'] or 'unknown'),
        ('running on', running_on or '-'),
        ('status message', f'{status_parts} part(s)' if status_parts else '-'),
        ('history', f'{len(task.history)} message(s)'),
        ('artifacts', f'{len(task.artifacts)}'),
    ]
    lines += [
        (f'  {a.artifact_id}', f'{a.name or "(no name)"}, {len(a.parts)} part(s)')
        for a in task.artifacts
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        if console.is_terminal:
            shown = _coloured_state(value) if key == 'state' else escape(value)
            console.print(f'[bold]{escape(key.ljust(width))}[/]  {shown}')
        else:
            line(console, f'{key.ljust(width)}  {value}')
    if bodies:
        line(console, json.dumps(MessageToDict(task), indent=2))
    elif status_parts or task.history or task.artifacts:
        hint = '(message parts and artifacts hidden: --bodies shows them)'
        console.print(f'[dim]{hint}[/]' if console.is_terminal else hint)


def print_replicas(
    console: Console, replicas: list[ReplicaInfo], *, as_json: bool, title: str
) -> None:
    """Prints the replicas: heartbeat age, running tasks, subscriptions."""
    now = time.time()
    if as_json:
        for r in replicas:
            line(
                console,
                json.dumps(
                    {
                        'instance_id': r.instance_id,
                        'last_heartbeat': iso(r.last_heartbeat),
                        'age_seconds': (
                            round(now - r.last_heartbeat, 3)
                            if r.last_heartbeat is not None
                            else None
                        ),
                        'running': (
                            [t.task_id for t in r.running]
                            if r.running is not None
                            else None
                        ),
                        'subscriptions': r.subscriptions,
                    }
                ),
            )
        return
    header = ['REPLICA', 'LAST HEARTBEAT', 'AGE', 'RUNNING', 'SUBSCRIPTIONS']
    rows = []
    for r in replicas:
        if r.running is None:
            running = 'unknown'
        else:
            ids = [t.task_id for t in r.running]
            running = str(len(ids)) + (f' ({", ".join(ids[:3])}' if ids else '')
            running += (', ...)' if len(ids) > 3 else ')') if ids else ''
        rows.append(
            [
                r.instance_id,
                iso(r.last_heartbeat) or 'unknown',
                f'{now - r.last_heartbeat:.1f}s' if r.last_heartbeat else '',
                running,
                'unknown' if r.subscriptions is None else str(r.subscriptions),
            ]
        )
    if not console.is_terminal:
        _plain(console, header, rows)
        return
    table = Table(title=title, box=None, padding=(0, 1), title_justify='left')
    for column in header:
        table.add_column(column.lower(), overflow='fold')
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table if rows else f'{escape(title)}: no live replicas')


def event_kind(event: object) -> tuple[str, str]:
    """The kind of an event (task, message, status, artifact) and its state."""
    if isinstance(event, TaskStatusUpdateEvent):
        return 'status', state_name(event.status.state)
    if isinstance(event, TaskArtifactUpdateEvent):
        return 'artifact', ''
    if isinstance(event, Task):
        return 'task', state_name(event.status.state)
    if isinstance(event, Message):
        return 'message', ''
    return type(event).__name__, ''


def print_event(
    console: Console, item: FeedEvent, *, as_json: bool, bodies: bool
) -> None:
    """Prints one event: time, task, version, kind, state (no bodies)."""
    kind, state = event_kind(item.event)
    received = time.time()
    if as_json:
        record: dict[str, Any] = {
            'time': iso(item.saved_at),
            'received': iso(received),
            'task_id': item.task_id,
            'version': item.version,
            'kind': kind,
            'state': state or None,
        }
        if isinstance(item.event, TaskArtifactUpdateEvent):
            record['artifact'] = (
                item.event.artifact.name or item.event.artifact.artifact_id
            )
        if bodies:
            record['event'] = MessageToDict(item.event)
        line(console, json.dumps(record))
        return
    when = item.saved_at if item.saved_at is not None else received
    clock = datetime.fromtimestamp(when, UTC).strftime('%H:%M:%S.%f')[:-3]
    detail = state
    if isinstance(item.event, TaskArtifactUpdateEvent):
        detail = item.event.artifact.name or item.event.artifact.artifact_id
    if console.is_terminal:
        shown = _coloured_state(detail) if state else escape(detail)
        console.print(
            f'[dim]{clock}[/]  {escape(item.task_id)}  v{item.version}  '
            f'[bold]{kind:<8}[/] {shown}',
            soft_wrap=True,
        )
    else:
        line(
            console,
            f'{clock}  {item.task_id}  v{item.version}  {kind:<8} {detail}'.rstrip(),
        )
    if bodies:
        line(console, json.dumps(MessageToDict(item.event)))
