"""Local redis-server processes for tests: a single server and a 3-master Cluster.

Servers bind to 127.0.0.1 on free ports, keep their files in a given
directory and are stopped by pid.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def redis_binaries() -> tuple[str, str] | None:
    """The paths of ``redis-server`` and ``redis-cli``, if both are installed."""
    server, cli = shutil.which('redis-server'), shutil.which('redis-cli')
    return (server, cli) if server and cli else None


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return False
        return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    Args:
        cluster_bus: Also require port + 10000 (the Cluster bus) to be free.
    """
    if not cluster_bus:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = random.randint(20_000, 50_000)  # noqa: S311
        if _is_free(port) and _is_free(port + 10_000):
            return port
    raise RuntimeError('no free port pair for a Redis Cluster node')


def _wait_ping(cli: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(  # noqa: S603
            [cli, '-p', str(port), 'ping'], capture_output=True, text=True, check=False
        )
        if done.stdout.strip() == 'PONG':
            return
        time.sleep(0.05)
    raise TimeoutError(f'redis-server on port {port} did not start in {timeout} s')


class RedisServer:
    """One redis-server process on a free loopback port."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        cluster: bool = False,
        port: int | None = None,
    ) -> None:
        binaries = redis_binaries()
        if binaries is None:
            raise RuntimeError('redis-server and redis-cli must be on PATH')
        self.server_bin, self.cli_bin = binaries
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.cluster = cluster
        self.port = port or free_port(cluster_bus=cluster)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f'redis://127.0.0.1:{self.port}/0'

    def start(self) -> None:
        """Starts the server and waits until it answers."""
        args = [
            self.server_bin,
            '--bind', '127.0.0.1',
            '--port', str(self.port),
            '--dir', str(self.directory),
            '--save', '',
            '--appendonly', 'yes' if self.appendonly else 'no',
            '--appendfsync', 'always',
            '--protected-mode', 'no',
        ]  # fmt: skip
        if self.cluster:
            args += [
                '--cluster-enabled', 'yes',
                '--cluster-config-file', f'nodes-{self.port}.conf',
                '--cluster-node-timeout', '2000',
            ]  # fmt: skip
        log = (self.directory / 'redis.log').open('ab')
        self.process = subprocess.Popen(  # noqa: S603
            args, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        _wait_ping(self.cli_bin, self.port)

    def stop(self) -> None:
        """Stops the server (by pid) and waits for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stops and starts the server on the same port and files."""
        self.stop()
        self.start()


class RedisCluster3:
    """A local Redis Cluster of three masters and no replicas."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [RedisServer(directory / f'n{i}', cluster=True) for i in range(3)]

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (the client discovers the others)."""
        return self.nodes[0].url

    def start(self) -> None:
        """Starts the nodes, creates the cluster and waits until it is ok."""
        try:
            for node in self.nodes:
                node.start()
            cli = self.nodes[0].cli_bin
            subprocess.run(  # noqa: S603
                [
                    cli,
                    '--cluster',
                    'create',
                    *(f'127.0.0.1:{n.port}' for n in self.nodes),
                    '--cluster-replicas',
                    '0',
                    '--cluster-yes',
                ],
                capture_output=True,
                check=True,
                timeout=30,
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                info = subprocess.run(  # noqa: S603
                    [cli, '-p', str(self.nodes[0].port), 'cluster', 'info'],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                if 'cluster_state:ok' in info:
                    return
                time.sleep(0.1)
            raise TimeoutError('the local Redis Cluster did not reach state ok')
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops every node."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


def inject_faults(
    backend: Any,
    plan: Any,
    *,
    commands: bool = True,
    pipelines: bool = False,
    pubsub: bool = False,
) -> None:
    """Makes a started `RedisBackend`'s calls fail as `plan` says.

    By default only the client's commands (``execute_command``) fail;
    `pipelines` and `pubsub` add pipeline executions and the wake-up hub's
    Pub/Sub connection. See `a2a_scale_redis.fault_injection.inject_faults`
    for the call names and what each fault does.
    """
    from a2a_scale_redis import fault_injection  # noqa: PLC0415 - needs redis

    fault_injection.inject_faults(
        backend, plan, commands=commands, pipelines=pipelines, pubsub=pubsub
    )
