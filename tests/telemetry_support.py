"""OpenTelemetry SDK set-ups for the telemetry tests.

`local_instruments` gives a2a-scale instruments on private providers (an
in-memory span exporter and metric reader), so a test never installs global
providers in the shared pytest process. `create_agent` is the e2e agent of
a subprocess replica that installs global providers writing every ended
span as a JSON line to ``$A2A_SCALE_TEST_SPAN_DIR/<pid>.jsonl``.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from a2a_scale.telemetry import instruments

SPAN_DIR_ENV = 'A2A_SCALE_TEST_SPAN_DIR'


@dataclass
class Telemetry:
    """Private providers, their exporter and reader, and the instruments."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    instruments: instruments.Instruments

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def gauge(self, metric: str) -> float | None:
        points = self.points(metric)
        return points[-1].value if points else None

    def total(self, metric: str, **attributes: str) -> float:
        wanted = {f'a2a_scale.{k}': v for k, v in attributes.items()}
        return sum(
            getattr(p, 'value', None) or getattr(p, 'count', 0)
            for p in self.points(metric)
            if wanted.items() <= dict(p.attributes).items()
        )


def local_telemetry() -> Telemetry:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return Telemetry(
        spans,
        reader,
        tracer_provider,
        instruments.Instruments(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        ),
    )


class JsonLinesExporter(SpanExporter):
    """Appends each span (name, ids, links, attributes) to a file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open('a') as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + '\n')
        return SpanExportResult.SUCCESS


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        'name': span.name,
        'trace_id': format(context.trace_id, '032x'),
        'span_id': format(context.span_id, '016x'),
        'links': [format(link.context.trace_id, '032x') for link in span.links],
        'attributes': dict(span.attributes or {}),
    }


def read_spans(directory: pathlib.Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (file stem, span) for every span the replicas wrote."""
    for path in sorted(directory.glob('*.jsonl')):
        for line in path.read_text().splitlines():
            yield path.stem, json.loads(line)


def create_agent(url: str) -> Any:
    """The e2e agent, in a replica whose spans go to ``$A2A_SCALE_TEST_SPAN_DIR``."""
    from e2e_agents import create_agent as e2e_agent

    directory = pathlib.Path(os.environ[SPAN_DIR_ENV])
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesExporter(directory / f'{os.getpid()}.jsonl'))
    )
    trace.set_tracer_provider(provider)
    return e2e_agent(url)
