"""The plan of a benchmark run and its execution, step by step.

A run repeats every step `runs` times. Within one repetition, every target
goes through a scenario before the next scenario starts, so a burst of
background load hits all targets alike rather than one of them. Each step
gets fresh resources (namespace, database, file) and removes them after.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.adapters import build_target, cleanup, provision
from benchmarks.adapters.registry import AWS, BASELINES, FLOOR, REFERENCE, SCALE
from benchmarks.scenarios.checks import BenchmarkFailure
from benchmarks.sizes import Size

SCENARIOS = ('store', 'latency', 'fanout', 'e2e', 'aws')
STREAM_TARGETS = (*SCALE, *BASELINES, FLOOR)
"""Targets of the store, latency and fan-out scenarios."""
E2E_TARGETS = (REFERENCE, *SCALE, 'sql-postgres')
"""Targets of the e2e scenario (the reference is one in-memory replica).

SQLite is left out: two server processes writing one SQLite file is not a
deployment anyone runs.
"""
SECONDARY = {'sql-sqlite': ('store', 'latency')}
"""Scenarios of targets that only run them unless named with ``--target``.

SQLite's fan-out (1,000 pollers on one file) takes minutes and says nothing
the PostgreSQL baseline does not.
"""


@dataclass(frozen=True)
class Step:
    """One measurement: a scenario, a target and a case."""

    scenario: str
    target: str
    case: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``scenario/target/case``, for progress lines and errors."""
        return f'{self.scenario}/{self.target}/{self.case}'


def plan(
    scenarios: list[str], targets: list[str], size: Size, *, named: bool = False
) -> list[Step]:
    """The steps of one repetition, in execution order.

    Args:
        scenarios: Scenario names, a subset of `SCENARIOS`.
        targets: The selected targets; the e2e reference is added when e2e
            runs.
        size: The workload size.
        named: Whether the targets were named by the user; if not, the
            `SECONDARY` targets run only their own scenarios.
    """
    steps: list[Step] = []
    for scenario in (s for s in SCENARIOS if s in scenarios):
        stream_targets = [
            t
            for t in STREAM_TARGETS
            if t in targets and (named or scenario in SECONDARY.get(t, SCENARIOS))
        ]
        if scenario == 'store':
            for concurrency in size.store_concurrency:
                steps += [
                    Step('store', t, f'c{concurrency}', {'concurrency': concurrency})
                    for t in stream_targets
                ]
        elif scenario == 'latency':
            steps += [Step('latency', t, 'cross-replica') for t in stream_targets]
        elif scenario == 'fanout':
            for layout in size.fanout_layouts:
                for n in size.fanout_subscriptions:
                    if n == 1 and layout == 'one' and 'distinct' in size.fanout_layouts:
                        continue  # one subscription: both layouts are the same
                    steps += [
                        Step(
                            'fanout',
                            t,
                            f'{layout}-{n}',
                            {'layout': layout, 'subscriptions': n},
                        )
                        for t in stream_targets
                    ]
        elif scenario == 'e2e':
            for t in E2E_TARGETS:
                if t == REFERENCE or t in targets:
                    replicas = 1 if t == REFERENCE else 2
                    steps.append(
                        Step('e2e', t, f'{replicas}-replica', {'replicas': replicas})
                    )
        elif scenario == 'aws' and AWS in targets:
            steps.append(Step('aws', AWS, 'calls'))
    return steps


async def execute(step: Step, size: Size) -> dict[str, Any]:
    """Runs one step on fresh resources; returns its result."""
    if step.scenario == 'aws':
        from benchmarks.scenarios.aws import run_aws

        return await run_aws(size)
    spec = await provision(step.target)
    try:
        if step.scenario == 'e2e':
            from benchmarks.scenarios.e2e import run_e2e

            # Memory replicas share state only inside one process.
            shared = step.target in ('memory', REFERENCE)
            return await run_e2e(spec, step.params['replicas'], size, shared)
        from benchmarks.scenarios.probe import redis_probe

        async with build_target(spec) as target, redis_probe(spec) as probe:
            if step.scenario == 'store':
                from benchmarks.scenarios.store import run_store

                return await run_store(
                    target, step.params['concurrency'], size.store_seconds, probe
                )
            from benchmarks.scenarios.streams import run_fanout, run_latency

            if step.scenario == 'latency':
                return await run_latency(target, size, probe)
            return await run_fanout(
                target, size, step.params['layout'], step.params['subscriptions']
            )
    finally:
        await cleanup(spec)


@dataclass
class Outcome:
    """What became of one step of one repetition."""

    run: int
    step: Step
    seconds: float
    result: dict[str, Any] | None = None
    failure: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON record of this outcome."""
        record: dict[str, Any] = {
            'run': self.run,
            'scenario': self.step.scenario,
            'target': self.step.target,
            'case': self.step.case,
            'seconds': round(self.seconds, 3),
            'status': 'failed' if self.failure else 'ok',
        }
        if self.failure:
            record['failure'] = self.failure
        if self.result:
            record.update({k: v for k, v in self.result.items() if k != 'case'})
        return record


async def run_step(run: int, step: Step, size: Size) -> Outcome:
    """Runs `step`, turning any exception into a failed `Outcome`."""
    started = time.perf_counter()
    try:
        result = await execute(step, size)
    except BenchmarkFailure as e:
        return Outcome(run, step, time.perf_counter() - started, failure=str(e))
    except Exception as e:  # every crash is reported, then fails the run
        tail = ''.join(traceback.format_exception(e)[-3:]).strip()
        return Outcome(
            run,
            step,
            time.perf_counter() - started,
            failure=f'{step.label}: {type(e).__name__}: {e}\n{tail}',
        )
    return Outcome(run, step, time.perf_counter() - started, result=result)


async def run_all(
    steps: list[Step],
    size: Size,
    runs: int,
    *,
    on_start: Callable[[int, Step], None],
    on_done: Callable[[Outcome], None],
    fail_fast: bool = False,
) -> list[Outcome]:
    """Runs every step `runs` times, reporting progress through callbacks."""
    outcomes: list[Outcome] = []
    for run in range(1, runs + 1):
        for step in steps:
            on_start(run, step)
            outcome = await run_step(run, step, size)
            outcomes.append(outcome)
            on_done(outcome)
            if outcome.failure and fail_fast:
                return outcomes
    return outcomes
