"""Messages between the orchestrator and a worker: JSON lines or queues."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any

from benchmarks.scenarios.checks import BenchmarkFailure

ROOT = Path(__file__).resolve().parents[2]
PREFIX = '@bench '


class Channel(ABC):
    """A two-way message channel carrying JSON-able dicts."""

    @abstractmethod
    async def send(self, message: dict[str, Any]) -> None:
        """Sends one message."""

    @abstractmethod
    async def recv(self) -> dict[str, Any]:
        """Waits for the next message."""

    async def poll(self, key: str, within: float) -> dict[str, Any] | None:
        """Waits up to `within` s for a message holding `key`, else `None`."""
        try:
            async with asyncio.timeout(within):
                while True:
                    message = await self.recv()
                    if key in message:
                        return message
        except TimeoutError:
            return None

    async def expect(self, key: str, within: float) -> dict[str, Any]:
        """Waits up to `within` s for a message holding `key`, or fails."""
        message = await self.poll(key, within)
        if message is None:
            raise BenchmarkFailure(
                f'worker sent no {key!r} message within {within:.0f} s'
            )
        return message


class QueueChannel(Channel):
    """One end of an in-process channel."""

    def __init__(
        self,
        inbox: asyncio.Queue[dict[str, Any]],
        outbox: asyncio.Queue[dict[str, Any]],
    ) -> None:
        self._inbox = inbox
        self._outbox = outbox

    @classmethod
    def pair(cls) -> tuple[QueueChannel, QueueChannel]:
        """Two connected ends."""
        a: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        b: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        return cls(a, b), cls(b, a)

    async def send(self, message: dict[str, Any]) -> None:
        await self._outbox.put(message)

    async def recv(self) -> dict[str, Any]:
        return await self._inbox.get()


class StdioChannel(Channel):
    """The worker's end of a subprocess channel: stdout out, stdin in."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None

    async def send(self, message: dict[str, Any]) -> None:
        sys.stdout.write(PREFIX + json.dumps(message) + '\n')
        sys.stdout.flush()

    async def recv(self) -> dict[str, Any]:
        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(self._reader)
            await loop.connect_read_pipe(lambda: protocol, sys.stdin)
        line = await self._reader.readline()
        if not line:
            raise EOFError('orchestrator closed stdin')
        return dict(json.loads(line))


class ProcessChannel(Channel):
    """The orchestrator's end of a worker subprocess."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: IO[bytes]) -> None:
        self.process = process
        self._stderr = stderr

    @property
    def pid(self) -> int:
        """The worker's pid."""
        return self.process.pid

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + '\n').encode())
        await self.process.stdin.drain()

    async def recv(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = (await self.process.stdout.readline()).decode()
            if not line:
                await self.process.wait()
                raise BenchmarkFailure(
                    f'worker exited with {self.process.returncode}:\n{self.tail()}'
                )
            if line.startswith(PREFIX):
                message = dict(json.loads(line.removeprefix(PREFIX)))
                if 'error' in message:
                    raise BenchmarkFailure(f'worker failed: {message["error"]}')
                return message

    def tail(self, lines: int = 15) -> str:
        """The end of the worker's stderr."""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors='replace')
        return '\n'.join(text.splitlines()[-lines:])

    async def close(self) -> None:
        """Stops the worker by pid (SIGTERM, then SIGKILL)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        self._stderr.close()


async def spawn(role: str, spec_json: str, **kwargs: Any) -> ProcessChannel:
    """Starts ``python -m benchmarks.scenarios.worker`` in `role`."""
    payload = json.dumps({'role': role, 'spec': spec_json, 'kwargs': kwargs})
    env = {**os.environ}
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(ROOT), env.get('PYTHONPATH', '')) if p
    )
    stderr = tempfile.TemporaryFile(prefix=f'a2a-bench-{role}-')  # noqa: SIM115
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        '-m',
        'benchmarks.scenarios.worker',
        payload,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=str(ROOT),
        limit=2**24,
    )
    return ProcessChannel(process, stderr)
