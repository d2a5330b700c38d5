"""Without the OpenTelemetry API, a2a-scale imports no opentelemetry module.

A subprocess blocks every ``opentelemetry`` import (as if the ``otel``
extra were not installed), then sends, streams and subscribes on the memory
backend through the cluster handler.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.memory

TESTS = pathlib.Path(__file__).parents[1]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    class NoOpenTelemetry:
        def find_spec(self, name, path=None, target=None):
            if name == 'opentelemetry' or name.startswith('opentelemetry.'):
                raise ModuleNotFoundError(f'No module named {name!r}', name=name)
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())

    from a2a.types.a2a_pb2 import SubscribeToTaskRequest
    from handler_support import (
        InputThenComplete, agent_card, call_context, send_request, user_message,
    )
    from a2a_scale import telemetry
    from a2a_scale.api import load_backend
    import a2a_scale.handler, a2a_scale.serve, a2a_scale.cli
    import a2a_scale_redis.backend, a2a_scale_aws.backend, a2a_scale_postgres.backend

    async def main():
        ctx = call_context()
        async with load_backend('memory', namespace='no-otel') as backend:
            handler = backend.request_handler(
                agent_executor=InputThenComplete(), agent_card=agent_card()
            )
            task = await handler.on_message_send(send_request(user_message()), ctx)
            events = handler.on_subscribe_to_task(
                SubscribeToTaskRequest(id=task.id), ctx
            )
            await anext(events)
            follow_up = user_message(task_id=task.id, context_id=task.context_id)
            async for _ in handler.on_message_send_stream(
                send_request(follow_up), ctx
            ):
                pass
            async for _ in events:
                pass
            await handler.aclose()
        assert not telemetry.enabled()
        with telemetry.span(backend, 'x'):
            telemetry.count_retry('memory', 'test')
        telemetry.configure_logging(json_format=True)
        import logging
        logging.getLogger('a2a_scale.test').warning('logged')

    asyncio.run(main())
    loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))
    assert not loaded, loaded
    print('NO-OTEL-OK')
    """
)


def test_nothing_imports_opentelemetry_without_the_api() -> None:
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            'PYTHONPATH': f'{TESTS}:{TESTS / "handler"}',
            'PATH': '/usr/bin:/bin',
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'NO-OTEL-OK' in result.stdout
    assert '"message": "logged"' in result.stderr
