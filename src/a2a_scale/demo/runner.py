"""The demo: one customer-service request served across several replicas.

The story, checked at every step:

1. Connect to the configured backend in a fresh namespace of the demo's own;
   a bad setting or an unreachable service stops here with one clear error.
2. Start the replicas, then run the chapters (see `a2a_scale.demo.chapters`):
   stream, disconnect and resubscribe on another replica; cancel across
   replicas; every replica agrees on the final states.
3. Stop the replicas and delete everything the demo created in its namespace
   (keys, table, topic), unless asked to keep it.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
import uuid
from typing import TYPE_CHECKING, Any

from a2a_scale.api import load_backend
from a2a_scale.demo.agents import BILLING, BOOKING, STOP_DIR_ENV, CustomerServiceAgent
from a2a_scale.demo.agents import agent_card as build_card
from a2a_scale.demo.chapters import DemoChapters
from a2a_scale.demo.story import (
    DemoFailure,
    DemoResult,
    DemoSetupError,
    Narrator,
)
from a2a_scale.errors import A2AScaleError
from a2a_scale.plugins import get_backend_spec
from a2a_scale.settings import ScaleSettings, env_var_name, load_settings
from a2a_scale.testing.replicas import AgentFactory, ReplicaSet, default_mode

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.types.a2a_pb2 import AgentCard

    from a2a_scale.backend import Backend

AGENT_PATH = 'a2a_scale.demo.agents:create_agent'


def replica_failure(error: RuntimeError) -> str:
    """One line from a replica that failed to start: what, and its last error.

    A replica process that fails prints a traceback to its stderr; the first
    line of the error says which replica, the last line of the traceback
    says why.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return 'a replica failed to start'
    head = lines[0]
    reason = lines[-1] if len(lines) > 1 else ''
    return f'{head}: {reason}' if reason else head


def demo_settings(name: str, namespace: str) -> dict[str, Any]:
    """The plugin settings the demo sets, so it runs in its own namespace.

    A plugin marks a field with ``json_schema_extra={'demo': value}``: the
    demo sets it to `value` (``'namespace'`` means the demo's namespace),
    e.g. so that the backend creates the demo's resources.
    """
    model = get_backend_spec(name).settings_model
    values: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and 'demo' in extra:
            value = extra['demo']
            values[field] = namespace if value == 'namespace' else value
    return values


async def _connect(backend: Backend, namespace: str) -> None:
    """Starts the demo's own backend; explains a missing resource."""
    try:
        await backend.start()
    except A2AScaleError as e:
        if isinstance(e, LookupError):
            raise DemoSetupError(
                f'{e} (the demo runs in a fresh namespace of its own, '
                f'{namespace!r}: let the backend create its resources)'
            ) from None
        raise


async def _finish(
    backend: Backend, narrator: Narrator, namespace: str, *, keep: bool
) -> None:
    """Deletes what the demo created, or says where it was kept."""
    if keep:
        await backend.stop()
        narrator.cleanup(f'kept namespace {namespace!r} on {backend.name}')
        return
    try:
        deleted = await backend.purge()
    except NotImplementedError:
        narrator.cleanup(
            f'the {backend.name} backend cannot delete namespace {namespace!r}; '
            'it was left in place'
        )
        return
    except Exception as e:  # never hide why the demo itself failed
        narrator.cleanup(
            f'could not clean up namespace {namespace!r}: {type(e).__name__}: {e}'
        )
        return
    narrator.cleanup(
        f'cleaned up namespace {namespace!r}: {", ".join(deleted) or "nothing"}'
    )


async def run_demo(
    narrator: Narrator,
    *,
    backend: str | None = None,
    replicas: int = 3,
    step_delay: float = 0.25,
    keep: bool = False,
) -> DemoResult:
    """Runs the demo story and checks every step.

    Args:
        narrator: Receives the story as it happens.
        backend: Backend name; defaults to ``A2A_SCALE_BACKEND``.
        replicas: How many replicas to start (at least 2).
        step_delay: Seconds per agent step (in-process replicas only).
        keep: Keep what the demo stored (its namespace) instead of deleting it.

    Raises:
        DemoFailure: If any step misbehaves; the message says which and how.
        ConfigurationError: If a setting is invalid, naming its variable.
        BackendNotFoundError: If no installed plugin provides `backend`.
        ConnectionError: If the backend's service cannot be reached.
    """
    if replicas < 2:
        raise DemoFailure('the demo needs at least 2 replicas')
    name = backend or load_settings(ScaleSettings).backend
    namespace = f'demo-{uuid.uuid4().hex[:10]}'
    mode = default_mode(name)
    overrides = demo_settings(name, namespace)
    control = load_backend(name, namespace=namespace, **overrides)
    model = get_backend_spec(name).settings_model
    replica_env = {env_var_name(model, k): str(v) for k, v in overrides.items()}
    narrator.waiting(f'Connecting to the {name!r} backend...')
    await _connect(control, namespace)
    agents: dict[str, object] = {}

    def factory(url: str) -> tuple[AgentExecutor, AgentCard]:
        agent = CustomerServiceAgent(url, step_delay=step_delay)
        agents[url] = agent
        return agent, build_card(url)

    agent: AgentFactory | str = factory if mode == 'inprocess' else AGENT_PATH
    stop_dir = pathlib.Path(tempfile.mkdtemp(prefix='a2a-scale-demo-'))
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(_finish, control, narrator, namespace, keep=keep)
        stack.callback(shutil.rmtree, stop_dir, ignore_errors=True)
        replica_set = ReplicaSet(
            agent,
            count=replicas,
            backend=name,
            mode=mode,
            namespace=namespace,
            env={STOP_DIR_ENV: str(stop_dir), **replica_env},
        )
        narrator.waiting(
            f'Starting {replicas} replicas on the {name!r} backend ({mode})...'
        )
        try:
            await stack.enter_async_context(replica_set)
        except RuntimeError as e:
            raise DemoSetupError(replica_failure(e)) from None
        result = DemoResult(
            backend=name, mode=mode, replicas=replica_set.urls, namespace=namespace
        )
        for number, replica in enumerate(replica_set.replicas, start=1):
            narrator.note(
                f'Replica {number} ({replica.name}) at {replica.url}, pid {replica.pid}'
            )
        await DemoChapters(replica_set, narrator, agents, stop_dir).run(result)
    return result


__all__ = [
    'BILLING',
    'BOOKING',
    'DemoFailure',
    'DemoResult',
    'DemoSetupError',
    'Narrator',
    'run_demo',
]
