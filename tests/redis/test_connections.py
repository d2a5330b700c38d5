"""Ways to reach Redis: unix sockets, TLS, Sentinel, an application's client.

Each transport runs part of the conformance suite (two replicas sharing
state, streams and health) against a real redis-server this module starts on
loopback or on a socket in a temporary directory. Startup against a black
hole (a listener that accepts and never answers) must fail within the
configured timeouts.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import TaskState
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from a2a_scale import (
    Backend,
    BackendUnavailableError,
    ConfigurationError,
    load_backend,
)
from a2a_scale.testing import ClusterConformance, HealthConformance
from a2a_scale.testing.helpers import (
    Subscription,
    TaskWriter,
    make_task,
    user_context,
)
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.connection import BlockingSentinelConnectionPool
from a2a_scale_redis.testing import RedisCluster3, free_port, redis_binaries
from black_hole import BlackHole
from service_support import need_service

pytestmark = pytest.mark.redis


def _ports(count: int) -> tuple[int, ...]:
    """`count` distinct free loopback ports (runs at once never clash)."""
    found: set[int] = set()
    while len(found) < count:
        found.add(free_port())
    return tuple(found)


_PORTS = _ports(9)
TLS_PORT, SENTINEL_MASTER_PORT, SENTINEL_PORT, BLACK_HOLE_PORT = _PORTS[:4]
MASTER = 'a2a-scale-test'
COMPLETED = TaskState.TASK_STATE_COMPLETED
# Startup against a black hole must fail within connect + socket timeouts
# (1 s each here); the bound is generous for a loaded machine.
BOUND = 10.0


# --- Servers ---------------------------------------------------------------


class ServerProcess:
    """A redis-server (or sentinel) process, stopped by pid."""

    def __init__(self, directory: Path, args: list[str], ready: str) -> None:
        binaries = redis_binaries()
        need_service('redis-server', binaries is not None, 'not on PATH')
        assert binaries is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / 'server.log'
        with self.log.open('ab') as log:
            self.process = subprocess.Popen(
                [binaries[0], *args], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while ready.lower() not in self.log.read_text(errors='replace').lower():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f'redis-server did not start: {self.log.read_text()}')
            time.sleep(0.05)

    def stop(self) -> None:
        """Stops the process and waits for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _base_args(directory: Path) -> list[str]:
    return ['--bind', '127.0.0.1', '--dir', str(directory), '--save', '']


@pytest.fixture(scope='module')
def unix_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A redis-server listening only on a unix socket."""
    directory = tmp_path_factory.mktemp('unix')
    path = directory / 'redis.sock'
    server = ServerProcess(
        directory,
        [
            *_base_args(directory),
            '--port',
            '0',
            '--unixsocket',
            str(path),
            '--unixsocketperm',
            '700',
        ],
        'ready to accept connections',
    )
    yield path
    server.stop()


def _make_certs(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    pytest.importorskip('cryptography')
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write(stem: str, cert: x509.Certificate, private: Any) -> None:
        (directory / f'{stem}.crt').write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
        )
        (directory / f'{stem}.key').write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def build(subject: str, public: Any, issuer: str) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = key()
    ca = (
        build('a2a-scale test CA', ca_key.public_key(), 'a2a-scale test CA')
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write('ca', ca, ca_key)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    for stem, san in (('server', True), ('client', False)):
        private = key()
        builder = build(
            '127.0.0.1' if san else 'a2a-scale client',
            private.public_key(),
            'a2a-scale test CA',
        ).add_extension(authority, False)
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]
                ),
                False,
            )
        write(stem, builder.sign(ca_key, hashes.SHA256()), private)
    return {
        'ca': directory / 'ca.crt',
        'server': directory / 'server.crt',
        'server_key': directory / 'server.key',
        'client': directory / 'client.crt',
        'client_key': directory / 'client.key',
    }


@pytest.fixture(scope='module')
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A redis-server that speaks only TLS and requires client certificates."""
    directory = tmp_path_factory.mktemp('tls')
    certs = _make_certs(directory)
    server = ServerProcess(
        directory,
        [
            *_base_args(directory),
            '--port',
            '0',
            '--tls-port',
            str(TLS_PORT),
            '--tls-cert-file',
            str(certs['server']),
            '--tls-key-file',
            str(certs['server_key']),
            '--tls-ca-cert-file',
            str(certs['ca']),
            '--tls-auth-clients',
            'yes',
        ],
        'ready to accept connections',
    )
    yield certs
    server.stop()


@pytest.fixture(scope='module')
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A master and one sentinel monitoring it; yields the sentinel address."""
    directory = tmp_path_factory.mktemp('sentinel')
    master = ServerProcess(
        directory / 'master',
        [*_base_args(directory / 'master'), '--port', str(SENTINEL_MASTER_PORT)],
        'ready to accept connections',
    )
    config = directory / 'sentinel.conf'
    config.write_text(
        f'bind 127.0.0.1\nport {SENTINEL_PORT}\ndir {directory}\n'
        f'sentinel monitor {MASTER} 127.0.0.1 {SENTINEL_MASTER_PORT} 1\n'
        f'sentinel down-after-milliseconds {MASTER} 60000\n'
    )
    try:
        watcher = ServerProcess(
            directory / 'watcher', [str(config), '--sentinel'], '+monitor master'
        )
    except BaseException:
        master.stop()
        raise
    yield f'127.0.0.1:{SENTINEL_PORT}'
    watcher.stop()
    master.stop()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    """A loopback listener that accepts connections and never answers."""
    with BlackHole(BLACK_HOLE_PORT) as hole:
        yield hole


# --- Conformance over each transport ------------------------------------------


class TransportFactory:
    """Builds backends with `load_backend` and the options of `settings()`."""

    timeout = 10.0

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def create_backend(self, namespace: str) -> Backend:
        return load_backend('redis', namespace=namespace, **self.settings())

    async def destroy_namespace(self, namespace: str) -> None:
        backend = load_backend('redis', namespace='cleanup', **self.settings())
        assert isinstance(backend, RedisBackend)
        client = backend.client
        try:
            keys = [k async for k in client.scan_iter(match=f'*{namespace}*')]
            if keys:
                await client.delete(*keys)
        finally:
            await backend._close()


class TestUnixSocket(TransportFactory, ClusterConformance, HealthConformance):
    """A ``unix://`` URL (it failed on an option only TCP sockets take)."""

    @pytest.fixture(autouse=True)
    def _server(self, unix_socket: Path) -> None:
        self.url = f'unix://{unix_socket}?db=0'

    def settings(self) -> dict[str, Any]:
        return {'url': self.url}


class TestTLS(TransportFactory, ClusterConformance, HealthConformance):
    """A ``rediss://`` URL with a private CA and a client certificate."""

    @pytest.fixture(autouse=True)
    def _server(self, tls_server: dict[str, Path]) -> None:
        self.certs = tls_server

    def settings(self) -> dict[str, Any]:
        return {
            'url': f'rediss://127.0.0.1:{TLS_PORT}/0',
            'tls_ca_file': self.certs['ca'],
            'tls_cert_file': self.certs['client'],
            'tls_key_file': self.certs['client_key'],
        }


class TestSentinel(TransportFactory, ClusterConformance, HealthConformance):
    """A master found through Redis Sentinel, for commands and Pub/Sub."""

    @pytest.fixture(autouse=True)
    def _server(self, sentinel: str) -> None:
        self.sentinels = sentinel

    def settings(self) -> dict[str, Any]:
        return {
            'url': 'redis:///0',
            'sentinels': self.sentinels,
            'sentinel_master': MASTER,
        }


class TestApplicationClient(ClusterConformance, HealthConformance):
    """``load_backend('redis', client=...)`` uses that client for everything.

    The configured URL points at a port where nothing listens: any
    connection built from settings instead of from the client would fail.
    """

    timeout = 10.0

    @pytest.fixture(autouse=True)
    def _server(self, unix_socket: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv('A2A_SCALE_REDIS_URL', 'redis://127.0.0.1:1/0')
        self.path = unix_socket
        self.clients: list[Redis] = []

    def create_backend(self, namespace: str) -> Backend:
        client = Redis(unix_socket_path=str(self.path))
        self.clients.append(client)
        return load_backend('redis', namespace=namespace, client=client)

    async def destroy_namespace(self, namespace: str) -> None:
        for client in self.clients:
            # The backends are stopped: their clients must still work.
            assert await client.ping()
        client = self.clients[0]
        keys = [k async for k in client.scan_iter(match=f'*{namespace}*')]
        if keys:
            await client.delete(*keys)
        for client in self.clients:
            await client.aclose()


# --- Specific cases ------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_leaves_the_applications_client_open(unix_socket: Path) -> None:
    client = Redis(unix_socket_path=str(unix_socket))
    try:
        backend = load_backend('redis', namespace=f'c{uuid.uuid4().hex}', client=client)
        async with backend:
            context = user_context('alice')
            writer = TaskWriter(backend.task_store, context, make_task())
            await writer.create()
        assert await client.ping()
        assert await client.exists(f'{backend.settings.namespace}:instances') == 0
    finally:
        await client.aclose()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_application_cluster_client(redis_cluster: RedisCluster3) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    namespace = f'c{uuid.uuid4().hex}'
    try:
        backend = load_backend('redis', namespace=namespace, client=client)
        assert isinstance(backend, RedisBackend)
        assert backend.task_store._cluster
        async with backend:
            context = user_context('alice')
            writer = TaskWriter(backend.task_store, context, make_task())
            await writer.create()
            stored = await backend.task_store.get(writer.task_id, context)
            assert stored is not None
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_sentinel_resolves_the_master(sentinel: str) -> None:
    namespace = f'c{uuid.uuid4().hex}'
    backend = load_backend(
        'redis',
        namespace=namespace,
        url='redis:///0',
        sentinels=sentinel,
        sentinel_master=MASTER,
    )
    async with backend:
        writer = TaskWriter(backend.task_store, user_context('alice'), make_task())
        await writer.create()
        assert all(r.ok for r in await backend.health())
        assert MASTER in backend.address
    master = Redis(port=SENTINEL_MASTER_PORT)
    try:
        assert [k async for k in master.scan_iter(match=f'*{namespace}*')]
        keys = [k async for k in master.scan_iter(match=f'*{namespace}*')]
        await master.delete(*keys)
    finally:
        await master.aclose()


FAILOVER_MASTER = 'a2a-scale-failover'
FAILOVER_PORTS = _PORTS[4:7]  # master, replica, sentinel
MOVING_MASTER_PORTS = _PORTS[7:9]


@pytest.fixture
def sentinel_pair(tmp_path: Path) -> Iterator[str]:
    """A master, its replica and a sentinel that may fail over between them."""
    master_port, replica_port, sentinel_port = FAILOVER_PORTS
    started: list[ServerProcess] = []
    try:
        for name, extra in (
            ('master', ['--repl-diskless-sync-delay', '0']),
            ('replica', ['--replicaof', '127.0.0.1', str(master_port)]),
        ):
            port = master_port if name == 'master' else replica_port
            directory = tmp_path / name
            directory.mkdir()
            started.append(
                ServerProcess(
                    directory,
                    [*_base_args(directory), '--port', str(port), *extra],
                    'ready to accept connections',
                )
            )
        # The test forces the failover; a long down-after keeps a loaded
        # machine from starting an unplanned one mid-write.
        config = tmp_path / 'sentinel.conf'
        config.write_text(
            f'bind 127.0.0.1\nport {sentinel_port}\ndir {tmp_path}\n'
            f'sentinel monitor {FAILOVER_MASTER} 127.0.0.1 {master_port} 1\n'
            f'sentinel down-after-milliseconds {FAILOVER_MASTER} 60000\n'
            f'sentinel failover-timeout {FAILOVER_MASTER} 5000\n'
        )
        started.append(
            ServerProcess(
                tmp_path / 'watcher', [str(config), '--sentinel'], '+monitor master'
            )
        )
        yield f'127.0.0.1:{sentinel_port}'
    finally:
        for server in reversed(started):
            server.stop()


async def _until(check: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f'not within {within} s: {what}'
        await asyncio.sleep(0.1)


async def _replicated(port: int, offset: int) -> bool:
    replica = Redis(port=port)
    try:
        info = await replica.info('replication')
    finally:
        await replica.aclose()
    return int(info.get('slave_repl_offset', -1)) >= offset


async def _blocked_clients(server: Redis) -> bool:
    info = await server.info('clients')
    return int(info['blocked_clients']) > 0


class MovingMaster:
    """Stands in for a Sentinel: names whichever master the test says."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sentinels: list[Any] = []

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        del service_name
        return ('127.0.0.1', self.port)


@pytest.mark.asyncio
async def test_a_dropped_sentinel_connection_reconnects_to_the_new_master(
    tmp_path: Path,
) -> None:
    """A connection lost after a failover comes back on the new master.

    redis-py 6 and later reconnect a dropped connection to the address it
    last used, which after a failover is the demoted master: the next write
    went there.
    """
    servers = []
    try:
        for port in MOVING_MASTER_PORTS:
            directory = tmp_path / str(port)
            directory.mkdir()
            servers.append(
                ServerProcess(
                    directory,
                    [*_base_args(directory), '--port', str(port)],
                    'ready to accept connections',
                )
            )
        old, new = (Redis(port=port) for port in MOVING_MASTER_PORTS)
        sentinel = MovingMaster(MOVING_MASTER_PORTS[0])
        pool = BlockingSentinelConnectionPool(
            'moving', sentinel, max_connections=1, retry=Retry(NoBackoff(), 2)
        )
        client = Redis.from_pool(pool)
        try:
            await new.rpush('inbox', 'on the new master')
            waiting = asyncio.create_task(client.blpop(['inbox'], timeout=5))
            await _until(
                lambda: _blocked_clients(old), 'the pop waits on the old master'
            )
            sentinel.port = MOVING_MASTER_PORTS[1]  # the failover
            await old.execute_command(
                'CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'
            )
            # The retried pop must go to the new master, where the item is.
            popped = await asyncio.wait_for(waiting, 10)
            assert list(popped or ()) == [b'inbox', b'on the new master']
        finally:
            await client.aclose()
            await old.aclose()
            await new.aclose()
    finally:
        for server in servers:
            server.stop()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_sentinel_failover_loses_no_event(sentinel_pair: str) -> None:
    """Writes on A and a stream on B carry on through a Sentinel failover."""
    master_port, replica_port, sentinel_port = FAILOVER_PORTS
    watcher = Redis(port=sentinel_port)
    old_master = Redis(port=master_port)

    async def replica_ready() -> bool:
        info = await old_master.info('replication')
        replicas = await watcher.execute_command(
            'SENTINEL', 'REPLICAS', FAILOVER_MASTER
        )
        synced = info.get('slave0', {}).get('state') == 'online'
        return synced and bool(replicas)

    async def failover_started() -> bool:
        # Sentinel refuses (NOGOODSLAVE) until it has fresh INFO from the
        # replica, which may take a few seconds after it first lists it.
        try:
            await watcher.execute_command('SENTINEL', 'FAILOVER', FAILOVER_MASTER)
        except ResponseError as e:
            if 'NOGOODSLAVE' not in str(e):
                raise
            return False
        return True

    async def promoted() -> bool:
        address = await watcher.execute_command(
            'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', FAILOVER_MASTER
        )
        info = await old_master.info('replication')
        return int(address[1]) == replica_port and info['role'] == 'slave'

    options: dict[str, Any] = {
        'namespace': f'c{uuid.uuid4().hex}',
        'url': 'redis:///0',
        'sentinels': sentinel_pair,
        'sentinel_master': FAILOVER_MASTER,
    }
    try:
        await _until(replica_ready, 'the replica is in sync and known')
        async with (
            load_backend('redis', **options) as a,
            load_backend('redis', **options) as b,
        ):
            writer = TaskWriter(a.task_store, user_context('alice'), make_task())
            subscription = Subscription(b.event_stream, writer.task_id, timeout=20)
            try:
                expected = [await writer.create()]
                for i in range(5):
                    expected.append(await writer.add_artifact(f'before {i}'))
                # WAIT would only cover this test's own connection's writes:
                # compare offsets so the replica holds the backends' writes.
                written = (await old_master.info('replication'))['master_repl_offset']
                await _until(
                    lambda: _replicated(replica_port, written),
                    'the replica has every write before the failover',
                )
                await _until(failover_started, 'Sentinel accepts the failover')
                await _until(promoted, 'the replica is promoted')
                for i in range(5):
                    expected.append(await writer.add_artifact(f'after {i}'))
                expected.append(await writer.set_state(COMPLETED))
                got = await subscription.take(len(expected))
                assert [(e.version, e.event) for e in got] == [
                    (e.version, e.event) for e in expected if e is not None
                ]
            finally:
                await subscription.close()
    finally:
        await watcher.aclose()
        await old_master.aclose()


async def _fails_fast(backend: Backend) -> BackendUnavailableError:
    started = time.monotonic()

    async def start() -> None:
        async with asyncio.timeout(60):
            await backend.start()

    with pytest.raises(BackendUnavailableError) as info:
        await start()
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f'startup took {elapsed:.1f} s'
    message = str(info.value)
    assert '\n' not in message
    return info.value


@pytest.mark.asyncio
async def test_black_hole_fails_within_the_timeouts(black_hole: BlackHole) -> None:
    url = f'redis://app:s3cret@127.0.0.1:{black_hole.port}/0'
    backend = load_backend('redis', url=url, connect_timeout=1, socket_timeout=1)
    error = await _fails_fast(backend)
    assert error.address == f'redis://app:***@127.0.0.1:{black_hole.port}/0'
    assert error.address in str(error)
    assert 's3cret' not in str(error)
    assert 'A2A_SCALE_REDIS_SOCKET_TIMEOUT' in str(error)


@pytest.mark.asyncio
async def test_black_hole_sentinel_fails_within_the_timeouts(
    black_hole: BlackHole,
) -> None:
    backend = load_backend(
        'redis',
        url='redis:///0',
        sentinels=f'127.0.0.1:{black_hole.port}',
        sentinel_master=MASTER,
        connect_timeout=1,
        socket_timeout=1,
    )
    error = await _fails_fast(backend)
    assert f'127.0.0.1:{black_hole.port}' in str(error)
    assert 'A2A_SCALE_REDIS_SENTINELS' in str(error)


@pytest.mark.asyncio
async def test_rediss_to_a_plain_server_fails_within_the_timeouts(
    redis_url: str,
) -> None:
    url = redis_url.replace('redis://', 'rediss://')
    backend = load_backend('redis', url=url, connect_timeout=1, socket_timeout=1)
    error = await _fails_fast(backend)
    assert url in str(error)


@pytest.mark.asyncio
async def test_tls_with_an_unknown_ca_fails_clearly(
    tls_server: dict[str, Path],
) -> None:
    backend = load_backend(
        'redis',
        url=f'rediss://127.0.0.1:{TLS_PORT}/0',
        tls_cert_file=tls_server['client'],
        tls_key_file=tls_server['client_key'],
        connect_timeout=1,
        socket_timeout=1,
    )
    error = await _fails_fast(backend)
    assert 'certificate' in str(error).lower()


@pytest.mark.asyncio
async def test_tls_without_verification_still_encrypts(
    tls_server: dict[str, Path],
) -> None:
    backend = load_backend(
        'redis',
        url=f'rediss://127.0.0.1:{TLS_PORT}/0',
        tls_verify=False,
        tls_cert_file=tls_server['client'],
        tls_key_file=tls_server['client_key'],
    )
    async with backend:
        assert all(r.ok for r in await backend.health())


# --- Wrong combinations fail at load time ------------------------------------


@pytest.mark.parametrize(
    ('settings', 'variable'),
    [
        (
            {'sentinels': '127.0.0.1:26379', 'sentinel_master': 'm', 'cluster': True},
            'A2A_SCALE_REDIS_SENTINELS',
        ),
        ({'sentinels': '127.0.0.1:26379'}, 'A2A_SCALE_REDIS_SENTINEL_MASTER'),
        ({'sentinels': '127.0.0.1', 'sentinel_master': 'm'}, 'SENTINELS'),
        ({'sentinels': 'h:99999', 'sentinel_master': 'm'}, 'SENTINELS'),
        ({'sentinel_master': 'm'}, 'A2A_SCALE_REDIS_SENTINELS'),
        (
            {'url': 'unix:///tmp/r.sock', 'sentinels': 'h:1', 'sentinel_master': 'm'},
            'A2A_SCALE_REDIS_SENTINELS',
        ),
        ({'url': 'unix:///tmp/r.sock', 'cluster': True}, 'A2A_SCALE_REDIS_CLUSTER'),
        ({'tls_ca_file': __file__}, 'A2A_SCALE_REDIS_TLS_CA_FILE'),
        (
            {'url': 'rediss://h/0', 'tls_ca_file': '/no/such/ca.pem'},
            'A2A_SCALE_REDIS_TLS_CA_FILE',
        ),
        (
            {'url': 'rediss://h/0', 'tls_key_file': __file__},
            'A2A_SCALE_REDIS_TLS_KEY_FILE',
        ),
        ({'url': 'rediss://h/0?ssl_cert_reqs=none'}, 'A2A_SCALE_REDIS_URL'),
        ({'url': 'redis://h/0?socket_timeout=9'}, 'A2A_SCALE_REDIS_URL'),
    ],
)
def test_wrong_combinations_fail_at_load_time(
    settings: dict[str, Any], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(
            f'A2A_SCALE_REDIS_{name.upper()}', 'true' if value is True else str(value)
        )
    with pytest.raises(ConfigurationError, match=variable) as info:
        load_backend('redis')
    assert '\n' not in str(info.value)


@pytest.mark.asyncio
async def test_cluster_setting_with_a_plain_client_fails_at_load_time() -> None:
    client = Redis()
    try:
        with pytest.raises(ConfigurationError, match='A2A_SCALE_REDIS_CLUSTER'):
            load_backend('redis', client=client, cluster=True)
    finally:
        await client.aclose()


def test_unknown_keyword_names_settings_and_objects() -> None:
    with pytest.raises(ConfigurationError, match='client') as info:
        load_backend('redis', clinet=object())
    assert 'clinet' in str(info.value)


# --- The driver -----------------------------------------------------------------


def _import_error(prelude: str) -> str:
    """The ImportError message of importing the backend after `prelude`."""
    code = (
        f'{prelude}\n'
        'try:\n'
        '    import a2a_scale_redis.backend\n'
        'except ImportError as e:\n'
        '    print(e)\n'
        'else:\n'
        '    print("imported")\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_an_old_redis_py_is_named_with_the_version_needed() -> None:
    import redis

    message = _import_error(
        'import redis.backoff\ndel redis.backoff.ExponentialWithJitterBackoff'
    )
    assert f'redis-py {redis.__version__}' in message
    assert 'lacks redis.backoff.ExponentialWithJitterBackoff' in message
    assert 'upgrade it with: pip install "redis>=' in message
    assert 'a2a-scale[redis]' not in message


def test_a_missing_redis_py_names_the_extra() -> None:
    message = _import_error('import sys\nsys.modules["redis"] = None')
    assert 'pip install "a2a-scale[redis]"' in message
