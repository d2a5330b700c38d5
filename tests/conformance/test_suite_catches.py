"""The conformance suite fails on deliberately broken memory backends.

Each case runs one suite test (through pytester, as a backend author's run
would) on a variant from `broken_memory` and expects it to fail; the same
test on the unbroken memory backend passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ('pytester',)
pytestmark = pytest.mark.memory

HERE = Path(__file__).parent

CASES = [
    # (variant attribute, variant class, suite mixin, test selected by -k)
    ('space_class', 'SilentGapSpace', 'DeliveryConformance', 'slow_consumer'),
    ('stream_class', 'WakeLosingStream', 'FaultConformance', 'faults'),
    ('stream_class', 'EndingStream', 'DeliveryConformance', 'waits_after_terminal'),
    ('space_class', 'LogKeepingSpace', 'DeliveryConformance', 'delete_then_reuse'),
    ('space_class', 'ResurrectingSpace', 'SaveRulesConformance', 'never_changes'),
    (
        'space_class',
        'TerminalResaveRefusingSpace',
        'SaveRulesConformance',
        'same_terminal_state',
    ),
    ('space_class', 'EmptyIdCorruptSpace', 'SaveRulesConformance', 'empty_task_id'),
    (
        'running_class',
        'DoubleClaimRunningTasks',
        'RunningTasksConformance',
        'concurrent_claimers',
    ),
    (
        'running_class',
        'LiveClaimingRunningTasks',
        'RunningTasksConformance',
        'live_replicas',
    ),
    (
        'running_class',
        'GoneKeepingRunningTasks',
        'RunningTasksConformance',
        'stopped_replica',
    ),
    (
        'running_class',
        'AnyoneRemovesRunningTasks',
        'RunningTasksConformance',
        'remove_by_another',
    ),
    (
        'running_class',
        'HolderBlindRunningTasks',
        'RunningTasksConformance',
        'remove_many',
    ),
]


def _run(
    pytester: pytest.Pytester, attribute: str, variant: str | None, mixin: str, k: str
) -> pytest.RunResult:
    pytester.syspathinsert(HERE)
    imports = f', {variant}' if variant else ''
    override = f'    {attribute} = {variant}\n' if variant else '    pass\n'
    pytester.makepyfile(
        test_broken=(
            f'from broken_memory import BrokenMemoryFactory{imports}\n'
            f'from a2a_scale.testing import {mixin}\n\n\n'
            f'class TestVariant(BrokenMemoryFactory, {mixin}):\n{override}'
        )
    )
    return pytester.runpytest_inprocess(
        '-k',
        k,
        '-p',
        'no:cacheprovider',
        '-q',
        '-o',
        'asyncio_default_fixture_loop_scope=function',
    )


@pytest.mark.parametrize(('attribute', 'variant', 'mixin', 'k'), CASES)
def test_suite_fails_on_the_broken_variant(
    pytester: pytest.Pytester, attribute: str, variant: str, mixin: str, k: str
) -> None:
    result = _run(pytester, attribute, variant, mixin, k)
    outcomes = result.parseoutcomes()
    assert outcomes.get('failed', 0) >= 1, (variant, outcomes)


@pytest.mark.parametrize(
    ('mixin', 'k'), sorted({(mixin, k) for _, _, mixin, k in CASES})
)
def test_same_test_passes_on_the_unbroken_backend(
    pytester: pytest.Pytester, mixin: str, k: str
) -> None:
    result = _run(pytester, '', None, mixin, k)
    outcomes = result.parseoutcomes()
    assert outcomes.get('passed', 0) >= 1, outcomes
    assert outcomes.get('failed', 0) == 0, outcomes
