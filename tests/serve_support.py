"""``a2a-scale serve`` as a real process, for the tests of tests/serve."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import signal
import sys
from collections.abc import Mapping
from typing import IO

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / 'examples'
SERVING = re.compile(r'a2a-scale serving (http://\S+): backend')
START_TIMEOUT = 60.0


class ServeProcess:
    """One ``a2a-scale serve`` process and its log."""

    def __init__(self, process: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.process = process
        self._log = log
        self.url = ''

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors='replace')

    async def wait_serving(self) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            found = SERVING.search(self.log())
            if found:
                self.url = found.group(1)
                return self.url
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f'a2a-scale serve did not start:\n{self.log()[-3000:]}')

    def signal(self, signum: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    async def exit_code(self, within: float = 40.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout=within)


async def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def wait_ready(url: str, *, within: float = 20.0) -> None:
    """Waits until ``/readyz`` answers 200."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        async with asyncio.timeout(within):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f'{url}/readyz')).status_code == 200:
                        return
                await asyncio.sleep(0.05)


async def start_process(
    agent: str, *, log: IO[bytes], env: Mapping[str, str] | None, app_dir: str
) -> ServeProcess:
    """Starts ``a2a-scale serve --agent AGENT --port 0`` (memory by default).

    An `agent` ending in ``.py`` is run as a script instead, with ``PORT=0``.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault('A2A_SCALE_BACKEND', 'memory')
    if agent.endswith('.py'):
        full_env['PORT'] = '0'
        argv = [agent]
    else:
        argv = [
            '-c',
            'from a2a_scale.cli import main; main()',
            'serve',
            '--agent',
            agent,
            '--port',
            '0',
            '--app-dir',
            app_dir or str(EXAMPLES),
        ]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        env=full_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    return ServeProcess(process, log)
