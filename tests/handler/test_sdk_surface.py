"""SDK-drift guards: the SDK names the handler relies on, and its overrides.

`a2a_scale.sdk_compat` lists every SDK name beyond the SDK's exported API
that a2a-scale relies on and checks them when `a2a_scale.handler` is
imported. These tests prove that check catches each kind of drift with a
message naming the name and the supported range, and that the SDK really
calls every method the handler overrides: a renamed hook fails here instead
of silently disabling a fix.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, create_client
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.cluster import TaskVersion
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
)
from handler_support import (
    WAIT,
    Completes,
    agent_card,
    call_context,
    send_request,
    state_of,
    user_message,
)

import a2a_scale
from a2a_scale import sdk_compat
from a2a_scale.errors import UnsupportedSDKError
from a2a_scale.handler import ClusterRequestHandler
from a2a_scale.handler.registry import ClusterTaskRegistry
from a2a_scale.sdk_compat import SDK_NAMES, SUPPORTED_SDK_RANGE, SdkName, Use
from a2a_scale.tasks import version_int
from a2a_scale.testing.replica_app import build_app

pytestmark = pytest.mark.memory

ROOT = Path(__file__).resolve().parents[2]
CANCELED = TaskState.TASK_STATE_CANCELED
COMPLETED = TaskState.TASK_STATE_COMPLETED


# -- the check ------------------------------------------------------------------


def test_installed_sdk_has_every_listed_name() -> None:
    assert sdk_compat.verify() == []
    assert sdk_compat.sdk_version_supported()
    sdk_compat.require()


def test_supported_range_is_the_declared_requirement() -> None:
    """The range in error messages is the one pyproject.toml declares."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    (declared,) = [
        requirement
        for dependency in project['dependencies']
        if (requirement := Requirement(dependency)).name == 'a2a-sdk'
    ]
    assert declared.specifier == SpecifierSet(SUPPORTED_SDK_RANGE)
    lowest = next(s.version for s in declared.specifier if s.operator == '>=')
    assert sdk_compat.sdk_version_supported(lowest)


@pytest.mark.parametrize(
    ('version', 'supported'),
    [('1.3.0', True), ('1.9.2', True), ('1.2.3', False), ('2.0.0', False)],
)
def test_supported_range(version: str, supported: bool) -> None:
    assert sdk_compat.sdk_version_supported(version) is supported


def _owner_and_member(entry: SdkName) -> tuple[Any, str]:
    module = sys.modules[entry.module]
    owner: Any = module
    *parents, member = entry.name.split('.')
    for part in parents:
        owner = getattr(owner, part)
    return owner, member


def _break(entry: SdkName, monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the installed SDK lose or change `entry`, as a release might."""
    if entry.use is Use.MODULE:
        monkeypatch.setitem(sys.modules, entry.module, None)  # type: ignore[arg-type]
        return
    owner, member = _owner_and_member(entry)
    if entry.use is Use.ATTRIBUTE:
        # The SDK stops using the attribute: its functions no longer name it.
        function_owner, function = _owner_and_member(
            SdkName(entry.module, entry.used_in[-1], Use.CALL, '')
        )

        async def renamed(self: Any, *args: Any, **kwargs: Any) -> None:
            return self._renamed_registry

        monkeypatch.setattr(function_owner, function, renamed)
    elif entry.use is Use.SLOT:
        monkeypatch.setattr(owner, '__slots__', ('_renamed',))
    elif member == '__init__' or member in vars(owner):
        monkeypatch.delattr(owner, member)
    else:  # pragma: no cover - every listed member is defined on its owner
        raise AssertionError(f'{entry.path} is not defined where listed')


@pytest.mark.parametrize('entry', SDK_NAMES, ids=[e.path for e in SDK_NAMES])
def test_each_listed_name_is_checked(
    entry: SdkName, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Losing any listed name gives one error naming it and the range."""
    _break(entry, monkeypatch)
    monkeypatch.setattr(sdk_compat, '_required', False)

    problems = sdk_compat.verify()
    assert any(problem.startswith(entry.path + ' ') for problem in problems), problems
    with pytest.raises(UnsupportedSDKError) as raised:
        sdk_compat.require()
    message = str(raised.value)
    assert entry.path in message
    assert f'a2a-sdk{SUPPORTED_SDK_RANGE}' in message
    assert sdk_compat.installed_sdk_version() in message
    assert raised.value.supported == SUPPORTED_SDK_RANGE
    assert '\n' not in message.split('\n', 1)[0]  # One headline, then the list.


def test_changed_override_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from a2a.server.agent_execution.active_task_registry import ActiveTaskRegistry

    def cleanup(self: Any, task: Any, reason: str) -> None:
        raise AssertionError('not called')

    monkeypatch.setattr(ActiveTaskRegistry, '_on_active_task_cleanup', cleanup)
    (problem,) = sdk_compat.verify()
    assert problem.startswith(
        'a2a.server.agent_execution.active_task_registry.'
        'ActiveTaskRegistry._on_active_task_cleanup changed: '
        'a2a-scale overrides it as (self, active_task), '
        'the SDK has (self, task, reason)'
    )


def test_lost_handler_argument_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK without ``interrupted_task_timeout`` (as 1.2.x) is refused."""
    original = DefaultRequestHandler.__init__

    def older(
        self: Any,
        agent_executor: Any,
        task_store: Any,
        agent_card: Any,
        push_sender: Any = None,
        event_stream: Any = None,
    ) -> None:
        original(self, agent_executor, task_store, agent_card)

    monkeypatch.setattr(DefaultRequestHandler, '__init__', older)
    problems = sdk_compat.verify()
    assert len(problems) == 2  # The missing argument and the registry it sets.
    assert problems[1].startswith(
        'a2a.server.request_handlers.default_request_handler_v2.'
        'DefaultRequestHandlerV2.__init__ changed: '
        'it lacks the parameter interrupted_task_timeout'
    )


_BROKEN_SDK = """
import a2a.server.agent_execution.active_task_registry as registry
del registry.ActiveTaskRegistry._on_active_task_cleanup
import a2a_scale
print('imported a2a_scale')
for use in ('import a2a_scale.handler', 'a2a_scale.ClusterRequestHandler'):
    try:
        exec(use)
    except a2a_scale.UnsupportedSDKError as error:
        print('refused:', error)
"""


def test_import_of_the_handler_refuses_a_broken_sdk() -> None:
    """A real interpreter: the core imports, the handler raises one clear error."""
    run = subprocess.run(
        [sys.executable, '-c', _BROKEN_SDK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == 'imported a2a_scale'
    refusals = [line for line in lines if line.startswith('refused:')]
    assert len(refusals) == 2
    for refusal in refusals:
        assert 'ActiveTaskRegistry._on_active_task_cleanup is missing' in refusal
        assert f'(supported: a2a-sdk{SUPPORTED_SDK_RANGE})' in refusal
    assert 'pip install "a2a-sdk' in run.stdout


def test_task_version_value() -> None:
    assert version_int(TaskVersion(7)) == 7
    assert version_int(TaskVersion.MISSING) == 0
    with pytest.raises(TypeError, match='integer task versions'):
        version_int(TaskVersion('7'))


def test_own_state_never_shadows_the_sdks() -> None:
    """The handler's and registry's own attributes are names the SDK never uses.

    Otherwise an SDK release that starts using one of those names would have
    its state silently overwritten.
    """
    from a2a.server.agent_execution.active_task_registry import ActiveTaskRegistry
    from a2a.server.tasks import InMemoryTaskStore

    def names_used(cls: type) -> set[str]:
        used: set[str] = set()
        for klass in cls.__mro__:
            if not klass.__module__.startswith('a2a.'):
                continue
            for value in vars(klass).values():
                function = inspect.unwrap(getattr(value, '__func__', value))
                code = getattr(function, '__code__', None)
                if code is not None:
                    used.update(code.co_names)
        return used

    kwargs: dict[str, Any] = {
        'agent_executor': Completes(),
        'task_store': InMemoryTaskStore(),
        'agent_card': agent_card(),
    }
    sdk = DefaultRequestHandler(**kwargs)
    ours = ClusterRequestHandler(**kwargs)
    own = set(vars(ours)) - set(vars(sdk))
    assert own
    assert own.isdisjoint(names_used(DefaultRequestHandler))

    registry = ours._registry
    own_registry = set(vars(registry)) - set(
        vars(ActiveTaskRegistry(Completes(), kwargs['task_store']))
    )
    assert own_registry == {'_on_turn', '_on_release', '_turns'}
    assert own_registry.isdisjoint(names_used(ActiveTaskRegistry))


# -- the SDK calls every override ----------------------------------------------------


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[Any]:
    """Records each call of `cls.name`, an override `cls` itself defines."""
    assert name in vars(cls), f'{cls.__name__}.{name} is not an override'
    original: Callable[..., Any] = vars(cls)[name]
    calls: list[Any] = []
    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(original):

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            async with aclosing(original(self, *args, **kwargs)) as events:
                async for event in events:
                    yield event

    elif inspect.iscoroutinefunction(original):

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return await original(self, *args, **kwargs)

    else:

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110 (spies have no event to wait on)
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f'{what} within {WAIT} s')


class WaitsOrCompletes(AgentExecutor):
    """Works until cancelled when told ``wait``; otherwise completes."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        from a2a.server.tasks import TaskUpdater

        task_id, context_id = str(context.task_id), str(context.context_id)
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                )
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        if context.get_user_input() == 'wait':
            await asyncio.Event().wait()
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        from a2a.server.tasks import TaskUpdater

        await TaskUpdater(
            event_queue, str(context.task_id), str(context.context_id)
        ).cancel()


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[a2a_scale.Backend]:
    backend = a2a_scale.load_backend('memory', namespace=f's{uuid.uuid4().hex[:8]}')
    async with backend:
        yield backend


@pytest.mark.asyncio
async def test_sdk_calls_the_registry_overrides(
    backend: a2a_scale.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK sets up turns and releases tasks through the handler's registry."""
    set_up = _spy(monkeypatch, ClusterTaskRegistry, 'get_or_create')
    released = _spy(monkeypatch, ClusterTaskRegistry, '_on_active_task_cleanup')
    handler = backend.request_handler(
        agent_executor=Completes(), agent_card=agent_card(push=False)
    )
    done = await asyncio.wait_for(
        handler.on_message_send(send_request(user_message()), call_context()), WAIT
    )
    assert state_of(done) == COMPLETED

    assert set_up, 'the SDK never called ClusterTaskRegistry.get_or_create'
    args, kwargs = set_up[0]
    assert (args[0] if args else kwargs['task_id']) == done.id
    assert kwargs['create_task_if_missing'] is True
    await _until(
        lambda: bool(released),
        'the SDK did not call ClusterTaskRegistry._on_active_task_cleanup',
    )
    (active_task,), _ = released[0]
    assert active_task.task_id == done.id


@pytest.mark.asyncio
async def test_sdk_transport_calls_the_handler_overrides(
    backend: a2a_scale.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's JSON-RPC routes call each request method the handler overrides."""
    calls = {
        name: _spy(monkeypatch, ClusterRequestHandler, name)
        for name in (
            'on_message_send',
            'on_message_send_stream',
            'on_subscribe_to_task',
            'on_cancel_task',
        )
    }
    registry_lookups = _spy(monkeypatch, ClusterTaskRegistry, 'get_or_create')
    card = agent_card(push=False)
    handler = backend.request_handler(
        agent_executor=WaitsOrCompletes(), agent_card=card
    )
    app = build_app(handler, card)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, headers={'Authorization': 'Bearer alice'}
    ) as http:
        plain = await create_client(
            card, client_config=ClientConfig(streaming=False, httpx_client=http)
        )
        streaming = await create_client(
            card, client_config=ClientConfig(streaming=True, httpx_client=http)
        )
        async with asyncio.timeout(WAIT):
            started = [
                r
                async for r in plain.send_message(
                    SendMessageRequest(
                        message=user_message('wait'),
                        configuration=SendMessageConfiguration(return_immediately=True),
                    )
                )
            ]
            task: Task = started[-1].task
            assert task.id

            async def subscribe() -> list[Any]:
                return [
                    r
                    async for r in streaming.subscribe(
                        SubscribeToTaskRequest(id=task.id)
                    )
                ]

            subscription = asyncio.create_task(subscribe())
            await _until(
                lambda: bool(calls['on_subscribe_to_task']),
                'the SDK did not call ClusterRequestHandler.on_subscribe_to_task',
            )
            cancelled = await plain.cancel_task(CancelTaskRequest(id=task.id))
            assert cancelled.status.state == CANCELED
            seen = await subscription
            assert seen

            streamed = [
                r
                async for r in streaming.send_message(
                    SendMessageRequest(message=user_message('go'))
                )
            ]
            assert streamed
    for name, made in calls.items():
        assert made, f'the SDK never called ClusterRequestHandler.{name}'
    assert len(registry_lookups) >= 2
