"""Operator commands: ``replicas``, ``tasks list|show``, ``tail``, ``cancel``.

They connect to the backend as an operator (nothing is provisioned, no
heartbeat is recorded: the command is not a replica) and read across every
owner of the namespace. See `a2a_scale.ops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated

import typer
from a2a.types.a2a_pb2 import TaskState
from a2a.utils.errors import InvalidParamsError
from rich.console import Console
from rich.markup import escape

from a2a_scale.api import load_backend
from a2a_scale.cli.check import progress
from a2a_scale.cli.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    err_console,
    fail,
    guarded,
    redact,
    unknown_backend,
)
from a2a_scale.cli.ops_render import line as write_line
from a2a_scale.cli.ops_render import (
    parse_state,
    print_event,
    print_replicas,
    print_task,
    print_tasks,
    state_name,
)
from a2a_scale.errors import BackendNotFoundError, TerminalTaskError
from a2a_scale.ops import (
    FeedEvent,
    OperatorTask,
    ReplicaInfo,
    UnknownTaskError,
    UnsupportedOperationError,
    cancel_task,
    cluster_view,
    connected,
    replicas,
)

if TYPE_CHECKING:
    from a2a_scale.backend import Backend
    from a2a_scale.ops import ClusterView

console = Console(highlight=False)

BackendOption = Annotated[
    str | None,
    typer.Option(metavar='NAME', help='Backend to use; defaults to A2A_SCALE_BACKEND.'),
]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        metavar='NAME', help='Namespace to inspect; defaults to A2A_SCALE_NAMESPACE.'
    ),
]
JsonOption = Annotated[
    bool, typer.Option('--json', help='Print JSON (one object per line).')
]


def _open(name: str | None, namespace: str | None) -> tuple[Backend, ClusterView]:
    try:
        loaded = (
            load_backend(name, namespace=namespace) if namespace else load_backend(name)
        )
    except BackendNotFoundError as e:
        option = '--backend' if name else None
        fail(unknown_backend(e, option=option), EXIT_CONFIG)
    view = cluster_view(loaded)
    if view.process_local:
        err_console.print(
            f'[yellow]warning:[/] the {escape(loaded.name)} backend keeps its state '
            'in the process that serves it: this command sees only its own, '
            'empty, copy',
            soft_wrap=True,
        )
    return loaded, view


def _title(backend: Backend, what: str) -> str:
    at = f' at {redact(backend.address)}' if backend.address else ''
    return (
        f'{what} of namespace {backend.settings.namespace!r} '
        f'({backend.name}{at}; operator view, every owner)'
    )


def replicas_command(
    backend: BackendOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the live replicas: last heartbeat, running tasks, subscriptions."""
    loaded, _ = _open(backend, namespace)

    async def run() -> list[ReplicaInfo]:
        async with connected(loaded):
            return await replicas(loaded)

    with progress(f'Connecting to the {loaded.name} backend...'):
        found = asyncio.run(run())
    print_replicas(console, found, as_json=as_json, title=_title(loaded, 'Replicas'))


def tasks_list(  # noqa: PLR0917
    state: Annotated[
        list[str] | None,
        typer.Option(
            '--state',
            metavar='STATE',
            help='Only tasks in this state (working, input-required, ...); '
            'repeat for several.',
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option('--context', metavar='ID', help='Only tasks of this context.'),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, metavar='N', help='Most tasks to print.')
    ] = 50,
    page_token: Annotated[
        str,
        typer.Option(metavar='TOKEN', help='Continue after a previous listing.'),
    ] = '',
    backend: BackendOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the tasks of every owner, newest first (no message bodies)."""
    states: list[int] = []
    for text in state or []:
        try:
            states.append(parse_state(text))
        except ValueError as e:
            fail(f'--state: {e}', EXIT_CONFIG)
    loaded, view = _open(backend, namespace)

    async def run() -> tuple[list[OperatorTask], str | None, int]:
        async with connected(loaded):
            if len(states) <= 1:
                page = await view.list_tasks(
                    state=states[0] if states else 0,
                    context_id=context or '',
                    page_size=limit,
                    page_token=page_token,
                )
                return page.tasks, page.next_page_token, page.total
            found = [
                t
                for t in (
                    await view.list_tasks(context_id=context or '', page_size=10**9)
                ).tasks
                if t.task.status.state in states
            ]
            return found[:limit], None, len(found)

    with progress(f'Reading the tasks of the {loaded.name} backend...'):
        try:
            tasks, token, total = asyncio.run(run())
        except InvalidParamsError as e:
            fail(f'--page-token: {e.message or e}', EXIT_CONFIG)
    print_tasks(console, tasks, as_json=as_json, title=_title(loaded, 'Tasks'))
    if not as_json and (token or total > len(tasks)):
        more = f'{len(tasks)} of {total} task(s) shown'
        more += f'; next page: --page-token {token}' if token else ''
        err_console.print(
            f'[dim]{escape(more)}[/]' if err_console.is_terminal else more
        )


def tasks_show(
    task_id: Annotated[str, typer.Argument(metavar='ID', help='The task id.')],
    bodies: Annotated[
        bool,
        typer.Option(
            '--bodies', help='Also print message parts and artifacts (content).'
        ),
    ] = False,
    backend: BackendOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one task of any owner; its content only with --bodies."""
    loaded, view = _open(backend, namespace)

    async def run() -> tuple[OperatorTask | None, str | None]:
        async with connected(loaded):
            found = await view.find_task(task_id)
            running_on = None
            if found is not None and loaded.running_tasks is not None:
                records = await loaded.running_tasks.running()
                running_on = next(
                    (r.instance_id for r in records if r.task_id == task_id), None
                )
            return found, running_on

    found, running_on = asyncio.run(run())
    if found is None:
        raise UnknownTaskError(task_id, loaded.settings.namespace)
    print_task(console, found, running_on=running_on, bodies=bodies, as_json=as_json)


def tail(  # noqa: PLR0917
    task: Annotated[
        str | None,
        typer.Option('--task', metavar='ID', help='Only the events of this task.'),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(min=1, metavar='N', help='Stop after this many events.'),
    ] = None,
    bodies: Annotated[
        bool, typer.Option('--bodies', help='Also print each event in full.')
    ] = False,
    backend: BackendOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow the events of every task of the namespace as they are saved.

    One line per event: time saved, task, version, kind and state. Stop with
    Ctrl-C (or --count).
    """
    loaded, view = _open(backend, namespace)
    if view.process_local:
        raise UnsupportedOperationError(
            f'The {loaded.name!r} backend cannot be followed from another process: '
            'its events live in the process that serves them'
        )

    printed = _Printed()

    async def run() -> None:
        seen = 0
        async with connected(loaded):
            if not as_json:
                note = f'Following {_title(loaded, "events")}, from {view.feed_source}'
                err_console.print(
                    f'[dim]{escape(note)}; Ctrl-C stops[/]'
                    if err_console.is_terminal
                    else note,
                    soft_wrap=True,
                )
            events = view.events()
            try:
                async for item in events:
                    if task is not None and item.task_id != task:
                        continue
                    if not printed.add(item):
                        continue  # delivered again (at-least-once feeds)
                    print_event(console, item, as_json=as_json, bodies=bodies)
                    console.file.flush()
                    seen += 1
                    if count is not None and seen >= count:
                        return
            finally:
                await events.aclose()  # type: ignore[attr-defined]

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


class _Printed:
    """The events printed lately, so that one delivered twice prints once."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[tuple[str, int, bytes], None] = OrderedDict()
        self._size = size

    def add(self, item: FeedEvent) -> bool:
        """Records `item`; whether it was new."""
        data = item.event.SerializeToString(deterministic=True)
        key = (item.task_id, item.version, hashlib.sha256(data).digest())
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True


def cancel(
    task_id: Annotated[str, typer.Argument(metavar='ID', help='The task id.')],
    backend: BackendOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a task of any owner, as an operator.

    CANCELED is written with the store's compare-and-set, as a cancel served
    by any replica: subscribers everywhere see it and the replica running the
    agent stops it. A finished task is not changed.
    """
    loaded, _ = _open(backend, namespace)

    async def run() -> tuple[OperatorTask | None, OperatorTask]:
        async with connected(loaded):
            before = await cluster_view(loaded).find_task(task_id)
            return before, await cancel_task(loaded, task_id)

    try:
        before, after = asyncio.run(run())
    except TerminalTaskError as e:
        fail(
            f'task {task_id!r} already finished ({state_name(TaskState.Value(e.state))}'
            '): not canceled',
            EXIT_FAILED,
        )
    already = before is not None and before.version == after.version
    if as_json:
        line = {
            'id': task_id,
            'state': state_name(after.task.status.state),
            'version': after.version,
            'owner': after.owner,
            'already': already,
            'access': after.access,
        }
        write_line(console, json.dumps(line))
        return
    if already:
        console.print(f'task {escape(task_id)} was already canceled')
    else:
        console.print(
            f'task {escape(task_id)} (owner {escape(after.owner)}) '
            f'[yellow]canceled[/] at version {after.version}'
        )


def add_ops_commands(cli: typer.Typer, *, command_cls: type, group_cls: type) -> None:
    """Adds ``replicas``, ``tasks list|show``, ``tail`` and ``cancel`` to `cli`."""
    cli.command('replicas', cls=command_cls)(guarded(replicas_command))
    tasks = typer.Typer(
        name='tasks',
        cls=group_cls,
        help='List and show the tasks of every owner (operator access).',
        no_args_is_help=True,
    )
    tasks.command('list', cls=command_cls)(guarded(tasks_list))
    tasks.command('show', cls=command_cls)(guarded(tasks_show))
    cli.add_typer(tasks)
    cli.command(cls=command_cls)(guarded(tail))
    cli.command(cls=command_cls)(guarded(cancel))
