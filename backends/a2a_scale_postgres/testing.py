"""PostgreSQL helpers for tests: dropping schemas and a private server.

`PostgresServer` runs Debian's PostgreSQL binaries (``initdb`` and
``postgres``) on a loopback port, with trust authentication, its files in a
given directory. PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` user (through ``runuser``). It is stopped by pid.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


async def drop_schema(dsn: str, schema: str) -> None:
    """Drops `schema` and everything in it."""
    import asyncpg  # noqa: PLC0415

    from a2a_scale_postgres.schema import quote_schema  # noqa: PLC0415

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE')
    finally:
        await conn.close()


def postgres_bin_dir() -> Path | None:
    """The directory of ``initdb`` and ``postgres``, if installed."""
    found = shutil.which('initdb')
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def free_port(low: int = 0, high: int = 0) -> int:
    """A TCP port on 127.0.0.1 that is free right now, in [low, high] if given."""
    for port in range(low, high + 1) if low else [0]:
        with socket.socket() as sock:
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f'no free port in {low}-{high}')


class PostgresServer:
    """One private PostgreSQL server on a loopback port."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        ports: tuple[int, int] = (0, 0),
    ) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError('PostgreSQL server binaries (initdb) are not installed')
        self.bin_dir = bin_dir
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            # The server user must reach its files: root's private temp
            # directories are closed to it, so use a directory of its own.
            self._as_user = ['runuser', '-u', 'postgres', '--']
            directory = Path(tempfile.mkdtemp(prefix='a2a-scale-pg-'))
        self.directory = directory
        self.data = directory / 'data'
        self.port = port or free_port(*ports)
        self.running = False

    @property
    def dsn(self) -> str:
        """The DSN of the ``postgres`` database as user ``postgres``."""
        return f'postgresql://postgres@127.0.0.1:{self.port}/postgres'

    def _chown(self) -> None:
        if self._as_user:
            shutil.chown(self.directory, 'postgres', 'postgres')
            for path in self.directory.rglob('*'):
                with contextlib.suppress(OSError):
                    shutil.chown(path, 'postgres', 'postgres')

    def init(self) -> None:
        """Creates the cluster's files (once)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.data.exists():
            return
        self._chown()
        subprocess.run(  # noqa: S603
            [
                *self._as_user,
                str(self.bin_dir / 'initdb'),
                '-D', str(self.data),
                '-U', 'postgres',
                '--auth=trust',
                '--no-sync',
                '-E', 'UTF8',
                '--locale=C',
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(  # noqa: S603
            [*self._as_user, str(self.bin_dir / 'pg_ctl'), '-D', str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        self.init()
        options = (
            f'-h 127.0.0.1 -p {self.port} -k {self.directory} '
            '-c fsync=off -c synchronous_commit=off -c full_page_writes=off'
        )
        self._pg_ctl(
            'start', '-w', '-t', '30', '-o', options,
            '-l', str(self.directory / 'postgres.log'),
        )  # fmt: skip
        self.running = True

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from its pid file."""
        try:
            return int((self.data / 'postmaster.pid').read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stops the server (fast shutdown: clients are disconnected)."""
        if not self.running:
            return
        self.running = False
        try:
            self._pg_ctl('stop', '-w', '-m', 'fast', '-t', '30')
        except (subprocess.SubprocessError, OSError):
            pid = self.pid
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)

    def remove(self) -> None:
        """Stops the server and deletes its files."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        """Stops and starts the server on the same port and files."""
        self.stop()
        self.start()


_FAULTY_CALLS = ('fetch', 'fetchrow', 'fetchval', 'execute', 'executemany')


class _Faulty:
    """Proxies an asyncpg pool or connection; its query calls fail per a plan."""

    def __init__(self, target: Any, plan: Any) -> None:
        self._target = target
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name == 'acquire':
            return self._acquire
        if name not in _FAULTY_CALLS:
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            import asyncpg  # noqa: PLC0415

            fault = self._plan.next_fault(name)
            if fault is None:
                return await attribute(*args, **kwargs)
            if not fault.before:
                await attribute(*args, **kwargs)
            if fault.kind == 'connection':
                raise asyncpg.exceptions.ConnectionDoesNotExistError(
                    'injected connection fault'
                )
            raise asyncpg.exceptions.InternalServerError('injected server fault')

        return call

    @contextlib.asynccontextmanager
    async def _acquire(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with self._target.acquire(*args, **kwargs) as conn:
            yield _Faulty(conn, self._plan)


def inject_faults(backend: Any, plan: Any) -> None:
    """Makes a started `PostgresBackend`'s queries fail as `plan` says.

    The backend's pool (and each connection it lends) is proxied: a
    ``'connection'`` fault raises asyncpg's `ConnectionDoesNotExistError`, a
    ``'server'`` fault `InternalServerError`; either before the query or
    after it ran (its reply lost). The LISTEN connection is untouched.
    `plan` is any object with ``next_fault(name)``
    (`a2a_scale.testing.FaultPlan`).
    """
    backend.pool.pool = _Faulty(backend.pool.pool, plan)
