"""A description of the machine and the software a run measured."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from benchmarks.adapters.registry import POSTGRES_DSN, REDIS_URL

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ('a2a-scale', 'a2a-sdk', 'redis', 'aioboto3', 'moto', 'SQLAlchemy')


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The checked-out commit (read only), with ``+dirty`` if files changed."""
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ('+dirty' if dirty else '')


async def _redis_version() -> str | None:
    try:
        from redis.asyncio import Redis
    except ImportError:
        return None
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        info = await client.info('server')
        return str(info.get('redis_version'))
    except Exception:  # absent server: no version
        return None
    finally:
        await client.aclose()


async def _postgres_version() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return None
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=2)
    except Exception:  # absent server: no version
        return None
    try:
        return str(await conn.fetchval('SHOW server_version'))
    finally:
        await conn.close()


def load() -> dict[str, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return {'1m': one, '5m': five, '15m': fifteen}


async def describe() -> dict[str, Any]:
    """CPU, memory, OS, versions of Python, services and packages."""
    return {
        'cpu': _cpu_model(),
        'logical_cpus': psutil.cpu_count(logical=True),
        'memory_gb': round(psutil.virtual_memory().total / 2**30, 1),
        'os': platform.platform(terse=True),
        'python': sys.version.split()[0],
        'redis_server': await _redis_version(),
        'postgresql': await _postgres_version(),
        'packages': {p: _version(p) for p in PACKAGES if _version(p)},
        'commit': _git_commit(),
    }
