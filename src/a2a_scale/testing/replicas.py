"""Start N A2A replicas on loopback ports, sharing one backend.

Each replica is a real uvicorn server on ``127.0.0.1`` with its own
`DefaultRequestHandler` from ``backend.request_handler(...)``. Two modes:

- ``inprocess``: every replica runs as a ``uvicorn.Server.serve()`` task in
  the current event loop, with its own backend instance on the same
  namespace. This is how the memory backend shares state between replicas.
- ``subprocess``: every replica is a separate OS process started with
  ``python -m a2a_scale.testing.replica_app serve --agent module:factory``. The
  backend comes from the usual ``A2A_SCALE_*`` variables. Use it for
  backends with real shared infrastructure (Redis, AWS).

The agent is given as an `AgentFactory`, a callable that receives the
replica's base URL and returns ``(executor, card)``; subprocess mode needs it
as an importable ``'module:factory'`` path.

Callers are identified by a bearer token: ``Authorization: Bearer alice``
makes the SDK user ``alice``, so owner isolation is exercised for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, Self

import httpx
from a2a.client import Client, ClientConfig, create_client
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH

from a2a_scale.api import load_backend
from a2a_scale.errors import ConfigurationError
from a2a_scale.settings import ScaleSettings, load_settings
from a2a_scale.testing.replica_app import (
    READY_PREFIX,
    RPC_PATH,
    AgentFactory,
    BearerContextBuilder,
    BearerUser,
    build_app,
    loopback_socket,
    resolve_agent,
    serve_app,
)

if TYPE_CHECKING:
    from types import TracebackType

    from a2a_scale.backend import Backend

ReplicaMode = Literal['inprocess', 'subprocess']

MODE_ENV = 'A2A_SCALE_REPLICA_MODE'
_NAMES = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'


@contextlib.asynccontextmanager
async def connect(
    url: str, *, token: str | None = None, streaming: bool = True
) -> AsyncIterator[Client]:
    """Opens an SDK client on a replica, as the caller `token`.

    Args:
        url: The replica's base URL.
        token: Sent as ``Authorization: Bearer <token>``; `None` sends none.
        streaming: Whether the client uses SSE streaming.
    """
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=30.0) as http:
        client = await create_client(
            url, client_config=ClientConfig(streaming=streaming, httpx_client=http)
        )
        try:
            yield client
        finally:
            await client.close()


async def wait_ready(url: str, *, within: float, process: Any = None) -> None:
    """Waits until the replica at `url` serves its agent card.

    Raises:
        TimeoutError: If it is not ready within `timeout` seconds.
        RuntimeError: If `process` (a subprocess) exits first.
    """
    card_url = url + AGENT_CARD_WELL_KNOWN_PATH
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if process is not None and process.returncode is not None:
                raise RuntimeError(
                    f'Replica at {url} exited with code {process.returncode}'
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(card_url)).status_code == 200:
                    return
            if loop.time() > deadline:
                raise TimeoutError(f'Replica at {url} not ready after {within}s')
            await asyncio.sleep(0.05)


@dataclass
class Replica:
    """One running replica."""

    name: str
    url: str
    pid: int
    backend: Backend | None = field(default=None, repr=False)
    """The replica's backend instance (in-process mode only)."""


def default_mode(backend: str) -> ReplicaMode:
    """Returns ``A2A_SCALE_REPLICA_MODE``, else the natural mode of `backend`."""
    mode = os.environ.get(MODE_ENV) or (
        'inprocess' if backend == 'memory' else 'subprocess'
    )
    if mode not in ('inprocess', 'subprocess'):
        raise ConfigurationError(
            f'Invalid {MODE_ENV}={mode!r}: use inprocess or subprocess',
            variable=MODE_ENV,
        )
    return mode  # type: ignore[return-value]


class ReplicaSet:
    """Starts `count` replicas of one agent on one backend; stops them on exit.

    Example::

        async with ReplicaSet('my_agents:create', count=3) as replicas:
            async with connect(replicas[0].url, token='alice') as client:
                ...
    """

    def __init__(
        self,
        agent: AgentFactory | str,
        *,
        count: int = 3,
        backend: str | None = None,
        mode: ReplicaMode | None = None,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        pythonpath: Sequence[str] = (),
        startup_timeout: float = 60.0,
        handler_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Configures the set; nothing starts before ``async with``.

        Args:
            agent: The agent factory, or its ``'module:factory'`` path
                (required in subprocess mode).
            count: How many replicas to start.
            backend: Backend name; defaults to ``A2A_SCALE_BACKEND``.
            mode: ``inprocess`` or ``subprocess``; defaults to
                ``A2A_SCALE_REPLICA_MODE``, else in-process for memory and
                subprocess for every other backend.
            namespace: Shared namespace; defaults to a fresh random one so
                runs never see each other's tasks.
            env: Extra environment for subprocess replicas.
            pythonpath: Extra import paths for subprocess replicas.
            startup_timeout: Seconds to wait for each replica's agent card.
            handler_kwargs: Extra arguments for ``backend.request_handler``.
        """
        if count < 1:
            raise ValueError('count must be at least 1')
        self.backend = backend or load_settings(ScaleSettings).backend
        self.mode = mode or default_mode(self.backend)
        if self.mode == 'subprocess' and not isinstance(agent, str):
            raise ConfigurationError(
                'Subprocess replicas need the agent as a "module:factory" path'
            )
        if self.mode == 'subprocess' and self.backend == 'memory' and count > 1:
            raise ConfigurationError(
                'The memory backend shares state only inside one process; '
                f'run it with {MODE_ENV}=inprocess',
                variable=MODE_ENV,
            )
        self.agent = agent
        self.count = count
        self.namespace = namespace or f'e2e-{uuid.uuid4().hex[:12]}'
        self.env = dict(env or {})
        self.pythonpath = list(pythonpath)
        self.startup_timeout = startup_timeout
        self.handler_kwargs = dict(handler_kwargs or {})
        self.replicas: list[Replica] = []
        self._stack = contextlib.AsyncExitStack()

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def urls(self) -> list[str]:
        """The base URLs of the replicas, in start order."""
        return [r.url for r in self.replicas]

    async def __aenter__(self) -> Self:
        try:
            for index in range(self.count):
                name = _NAMES[index % len(_NAMES)] + ('' if index < 26 else str(index))
                if self.mode == 'inprocess':
                    replica = await self._start_inprocess(name)
                else:
                    replica = await self._start_subprocess(name)
                self.replicas.append(replica)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start_inprocess(self, name: str) -> Replica:
        for path in self.pythonpath:
            if path not in sys.path:
                sys.path.insert(0, path)
        factory = (
            resolve_agent(self.agent) if isinstance(self.agent, str) else self.agent
        )
        backend = load_backend(self.backend, namespace=self.namespace)
        await self._stack.enter_async_context(backend)
        sock = loopback_socket()
        url = f'http://127.0.0.1:{sock.getsockname()[1]}'
        executor, card = factory(url)
        handler = backend.request_handler(
            agent_executor=executor, agent_card=card, **self.handler_kwargs
        )
        self._stack.push_async_callback(handler.aclose)
        await self._stack.enter_async_context(
            serve_app(build_app(handler, card), sock=sock)
        )
        await wait_ready(url, within=self.startup_timeout)
        return Replica(name=name, url=url, pid=os.getpid(), backend=backend)

    async def _start_subprocess(self, name: str) -> Replica:
        env = {**os.environ, **self.env}
        env['A2A_SCALE_BACKEND'] = self.backend
        env['A2A_SCALE_NAMESPACE'] = self.namespace
        # A stopping test replica drains briefly (the product default is 20 s).
        env.setdefault('A2A_SCALE_DRAIN_SECONDS', '2')
        if self.pythonpath:
            env['PYTHONPATH'] = os.pathsep.join(
                [*self.pythonpath, env.get('PYTHONPATH', '')]
            ).rstrip(os.pathsep)
        stderr = self._stack.enter_context(
            tempfile.TemporaryFile(prefix=f'a2a-scale-replica-{name}-')  # noqa: SIM115
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            '-m',
            'a2a_scale.testing.replica_app',
            'serve',
            '--agent',
            str(self.agent),
            '--name',
            name,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        self._stack.push_async_callback(_stop_process, process)
        try:
            url = await asyncio.wait_for(
                _read_ready_url(process), timeout=self.startup_timeout
            )
            await wait_ready(url, within=self.startup_timeout, process=process)
        except (TimeoutError, RuntimeError) as e:
            raise RuntimeError(
                f'Replica {name} failed to start: {e}\n{_tail(stderr)}'
            ) from None
        return Replica(name=name, url=url, pid=process.pid)


async def _stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()


async def _read_ready_url(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f'exited with code {await process.wait()}')
        text = line.decode().strip()
        if text.startswith(READY_PREFIX):
            return f'http://127.0.0.1:{int(text.removeprefix(READY_PREFIX))}'


def _tail(stream: IO[bytes], lines: int = 20) -> str:
    stream.seek(0)
    return '\n'.join(stream.read().decode(errors='replace').splitlines()[-lines:])


__all__ = [
    'READY_PREFIX',
    'RPC_PATH',
    'AgentFactory',
    'BearerContextBuilder',
    'BearerUser',
    'Replica',
    'ReplicaMode',
    'ReplicaSet',
    'build_app',
    'connect',
    'default_mode',
    'loopback_socket',
    'resolve_agent',
    'serve_app',
    'wait_ready',
]
