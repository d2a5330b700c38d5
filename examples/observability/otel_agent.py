"""a2a-scale's traces and metrics in Prometheus and an OTLP collector.

As an agent factory for ``a2a-scale serve`` (the greeter of
``examples/minimal_agent.py``, with OpenTelemetry set up first)::

    pip install "a2a-scale[otel]" opentelemetry-sdk opentelemetry-exporter-prometheus
    a2a-scale serve --agent observability.otel_agent:create_agent --app-dir examples
    curl -s localhost:9464/metrics | grep a2a_scale

Metrics are served for Prometheus on ``A2A_SCALE_EXAMPLE_METRICS_PORT``
(9464). With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (e.g.
``http://127.0.0.1:4317``) and ``opentelemetry-exporter-otlp`` installed,
spans and metrics also go to that OTLP collector.

``python examples/observability/otel_agent.py`` runs a self-contained demo:
two in-process replicas on the memory backend, a few tasks sent to one and
followed from the other, then the Prometheus exposition of the a2a_scale
metrics and the spans recorded, by name.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
)
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from prometheus_client import REGISTRY, generate_latest, start_http_server

from a2a_scale import load_backend
from a2a_scale.testing import user_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # minimal_agent

from minimal_agent import create_agent as create_greeter

METRICS_PORT_ENV = 'A2A_SCALE_EXAMPLE_METRICS_PORT'
_configured = False


def _otlp() -> tuple[SpanExporter | None, MetricReader | None]:
    if not os.environ.get('OTEL_EXPORTER_OTLP_ENDPOINT'):
        return None, None
    # pip install opentelemetry-exporter-otlp
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
        OTLPMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter(), PeriodicExportingMetricReader(OTLPMetricExporter())


def configure(
    *, serve_metrics: bool = True, span_processor: SpanProcessor | None = None
) -> None:
    """Installs the global tracer and meter providers (once per process)."""
    global _configured  # noqa: PLW0603
    if _configured:
        return
    _configured = True
    resource = Resource.create({'service.name': 'greeter'})
    span_exporter, otlp_reader = _otlp()
    tracer_provider = TracerProvider(resource=resource)
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if span_processor is not None:
        tracer_provider.add_span_processor(span_processor)
    trace.set_tracer_provider(tracer_provider)
    readers: list[MetricReader] = [PrometheusMetricReader()]
    if otlp_reader is not None:
        readers.append(otlp_reader)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    if serve_metrics:
        start_http_server(int(os.environ.get(METRICS_PORT_ENV, '9464')))


def create_agent(url: str) -> Any:
    """The greeter, in a process whose telemetry goes to Prometheus (and OTLP)."""
    configure()
    return create_greeter(url)


class CountingProcessor(SpanProcessor):
    """Counts ended spans by name (for the demo's summary)."""

    def __init__(self) -> None:
        self.names: collections.Counter[str] = collections.Counter()

    def on_end(self, span: ReadableSpan) -> None:
        self.names[span.name] += 1


async def demo() -> None:
    """Two memory replicas; tasks sent to A and followed on B; then the metrics."""
    logging.getLogger('a2a').setLevel(logging.ERROR)  # the SDK's own chatter
    counting = CountingProcessor()
    configure(serve_metrics=False, span_processor=counting)
    ctx = user_context('alice')
    namespace = f'otel-demo-{uuid.uuid4().hex[:6]}'
    async with (
        load_backend('memory', namespace=namespace) as a,
        load_backend('memory', namespace=namespace) as b,
    ):
        executor, card = create_greeter('http://127.0.0.1')
        on_a = a.request_handler(agent_executor=executor, agent_card=card)
        on_b = b.request_handler(agent_executor=executor, agent_card=card)
        for name in ('Ada', 'Grace', 'Edsger'):
            message = Message(
                message_id=str(uuid.uuid4()),
                role=Role.ROLE_USER,
                parts=[Part(text=name)],
            )
            async for event in on_a.on_message_send_stream(
                SendMessageRequest(message=message), ctx
            ):
                task_id = getattr(event, 'task_id', '') or getattr(event, 'id', '')
                break
            async for _ in on_b.on_subscribe_to_task(
                SubscribeToTaskRequest(id=task_id), ctx
            ):
                pass
        await on_a.aclose()
        await on_b.aclose()
    exposition = generate_latest(REGISTRY).decode()
    print('# Prometheus exposition of the a2a_scale metrics')
    print('\n'.join(line for line in exposition.splitlines() if 'a2a_scale' in line))
    print('\n# Spans recorded, by name')
    for name, count in sorted(counting.names.items()):
        print(f'{count:5d}  {name}')


if __name__ == '__main__':
    asyncio.run(demo())
