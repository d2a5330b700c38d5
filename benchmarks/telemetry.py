"""Telemetry overhead: the store and latency scenarios, off and on, side by side.

``python -m benchmarks.telemetry [-t memory -t redis-streams] [--runs 3]``

Each target runs the store scenario (save with an event + get) and the
latency scenario (cross-replica delivery) in three modes, interleaved within
each repetition so background noise hits every mode alike:

- ``off``: no wrapper (``A2A_SCALE_TELEMETRY=off``, or the API absent);
- ``api``: the traced wrappers on the OpenTelemetry API with no SDK
  installed as provider (what an app gets with the ``otel`` extra and
  nothing configured);
- ``sdk``: the wrappers on an OpenTelemetry SDK tracer and meter provider
  with no exporter or reader: spans and metric points are built, and trace
  context rides with every stored event, then nothing is exported.

The table shows medians over the runs; the JSON (``--out``) keeps them all.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from a2a_scale import telemetry
from a2a_scale.telemetry import carrier

if TYPE_CHECKING:
    from a2a.server.cluster import TaskEventStream, VersionedTaskStore

    from a2a_scale.backend import Backend
    from a2a_scale.telemetry.instruments import Instruments

MODES = ('off', 'api', 'sdk')


@cache
def _sdk_instruments() -> Instruments:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from a2a_scale.telemetry.instruments import Instruments

    return Instruments(tracer_provider=TracerProvider(), meter_provider=MeterProvider())


def instrumented(
    backend: Backend, mode: str
) -> tuple[VersionedTaskStore, TaskEventStream]:
    """The backend's store and stream as telemetry `mode` has them."""
    if mode == 'off':
        carrier.DECODED.active = False
        return backend.task_store, backend.event_stream
    from a2a_scale.telemetry.instruments import Instruments
    from a2a_scale.telemetry.wrappers import (
        Probe,
        TracedEventStream,
        TracedTaskStore,
    )

    inst = _sdk_instruments() if mode == 'sdk' else Instruments()
    probe = Probe(
        backend.name, backend.settings.namespace, backend.instance_id, inst=inst
    )
    return (
        TracedTaskStore(backend.task_store, probe),
        TracedEventStream(backend.event_stream, probe),
    )


async def _one(target_name: str, scenario: str, mode: str, size: Any) -> dict[str, Any]:
    from benchmarks.adapters import build_target, cleanup, provision
    from benchmarks.adapters.base import TargetSpec

    spec = await provision(target_name)
    spec = TargetSpec(spec.name, spec.kind, {**spec.params, 'telemetry': mode})
    try:
        async with build_target(spec) as target:
            if scenario == 'store':
                from benchmarks.scenarios.store import run_store

                return await run_store(
                    target, size.store_concurrency[-1], size.store_seconds
                )
            from benchmarks.scenarios.streams import run_latency

            return await run_latency(target, size)
    finally:
        await cleanup(spec)


def _figures(scenario: str, result: dict[str, Any]) -> dict[str, float]:
    metrics = result['metrics']
    if scenario == 'store':
        return {
            k: metrics[k] for k in metrics if k in ('ops_per_s', 'p50_ms', 'p99_ms')
        }
    return {k: metrics[k] for k in ('p50_ms', 'p99_ms')}


async def compare(
    targets: list[str], size_name: str, runs: int
) -> list[dict[str, Any]]:
    """Runs every (target, scenario, mode) `runs` times; one record per run."""
    from benchmarks.sizes import SIZES

    telemetry.set_enabled(True)
    size = SIZES[size_name]
    records = []
    for run in range(1, runs + 1):
        for target in targets:
            for scenario in ('store', 'latency'):
                for mode in MODES:
                    result = await _one(target, scenario, mode, size)
                    records.append(
                        {
                            'run': run,
                            'target': target,
                            'scenario': scenario,
                            'mode': mode,
                            **_figures(scenario, result),
                        }
                    )
                    print(json.dumps(records[-1]), flush=True)
    return records


def table(records: list[dict[str, Any]]) -> str:
    """Medians per target, scenario and figure, one column per mode."""
    keys = sorted({(r['target'], r['scenario']) for r in records})
    lines = [f'{"target/scenario/figure":<40}' + ''.join(f'{m:>10}' for m in MODES)]
    for target, scenario in keys:
        rows = [
            r for r in records if (r['target'], r['scenario']) == (target, scenario)
        ]
        figures = [k for k in rows[0] if k not in ('run', 'target', 'scenario', 'mode')]
        for figure in figures:
            cells = []
            for mode in MODES:
                values = [r[figure] for r in rows if r['mode'] == mode and figure in r]
                cells.append(
                    f'{statistics.median(values):>10.3f}' if values else ' ' * 10
                )
            lines.append(
                f'{target + "/" + scenario + "/" + figure:<40}' + ''.join(cells)
            )
    return '\n'.join(lines)


def main(
    target: Annotated[list[str] | None, typer.Option('--target', '-t')] = None,
    size: Annotated[str, typer.Option('--size')] = 'smoke',
    runs: Annotated[int, typer.Option('--runs')] = 3,
    out: Annotated[Path | None, typer.Option('--out')] = None,
) -> None:
    """Telemetry off / api / sdk on the store and latency scenarios."""
    records = asyncio.run(compare(target or ['memory'], size, runs))
    print(table(records))
    if out is not None:
        out.write_text(json.dumps(records, indent=1) + '\n')


if __name__ == '__main__':
    typer.run(main)
