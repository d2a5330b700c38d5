"""A moto server for tests of the AWS backend, on a loopback port.

`MotoServer` starts ``python -m a2a_scale_aws.testing`` as a subprocess and
stops it by pid. The served app is moto's, with one change: moto's threaded
server evaluates DynamoDB conditions without a lock, so two concurrent
conditional writes can both succeed, which real DynamoDB never allows. The
app therefore serializes DynamoDB requests (SQS long polls stay concurrent).
Needs ``moto[server]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

FAKE_CREDENTIALS = {
    'AWS_ACCESS_KEY_ID': 'testing',
    'AWS_SECRET_ACCESS_KEY': 'testing',
    'AWS_SESSION_TOKEN': 'testing',
    'AWS_DEFAULT_REGION': 'us-east-1',
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """A ``moto_server``-like subprocess on 127.0.0.1, stopped by pid."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the server process, once started."""
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 30.0) -> None:
        """Starts the server and waits until it accepts connections."""
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, '-m', 'a2a_scale_aws.testing', '--port', str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **FAKE_CREDENTIALS},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f'moto server exited with {self._proc.returncode}')
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f'moto server did not listen within {timeout:.0f} s')

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL) by its pid."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialize_dynamodb(app: WsgiApp) -> WsgiApp:
    """Wraps a WSGI app so DynamoDB requests run one at a time."""
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get('HTTP_X_AMZ_TARGET', '').startswith('DynamoDB_'):
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return wrapped


class FaultyClient:
    """An aiobotocore client proxy whose calls fail as a fault plan says.

    A ``'connection'`` fault raises botocore's `EndpointConnectionError`, a
    ``'server'`` fault a `ClientError` with code ``InternalServerError``;
    either before the call or after it ran (its reply lost). The plan is any
    object with ``next_fault(name)`` (`a2a_scale.testing.FaultPlan`).
    """

    def __init__(self, client: Any, plan: Any, service: str) -> None:
        self._client = client
        self._plan = plan
        self._service = service

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith('_') or not callable(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            fault = self._plan.next_fault(f'{self._service}.{name}')
            if fault is None:
                return await attribute(*args, **kwargs)
            if not fault.before:
                await attribute(*args, **kwargs)
            from botocore.exceptions import (  # noqa: PLC0415
                ClientError,
                EndpointConnectionError,
            )

            if fault.kind == 'connection':
                raise EndpointConnectionError(endpoint_url='http://injected-fault')
            raise ClientError(
                {'Error': {'Code': 'InternalServerError', 'Message': 'injected'}},
                name,
            )

        return call


def inject_faults(backend: Any, plan: Any) -> None:
    """Makes a started `AWSBackend`'s DynamoDB and SQS calls fail per `plan`.

    The DynamoDB calls of the store, the stream and the running-task records,
    and the stream's SQS calls, go through a `FaultyClient`; other replicas
    are untouched.
    """
    store, stream = backend.task_store, backend.event_stream
    running = backend.running_tasks
    store._db = FaultyClient(store._db, plan, 'dynamodb')
    stream._db = FaultyClient(stream._db, plan, 'dynamodb')
    running._db = FaultyClient(running._db, plan, 'dynamodb')
    stream._doorbells.sqs = FaultyClient(stream._doorbells.sqs, plan, 'sqs')


def main(argv: list[str] | None = None) -> None:
    """Serves moto on 127.0.0.1 with serialized DynamoDB requests."""
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--port', type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault('MOTO_PORT', str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        '127.0.0.1',
        args.port,
        serialize_dynamodb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == '__main__':
    main()
