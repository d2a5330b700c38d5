"""The observability example runs and shows a2a_scale metrics and spans."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.memory

EXAMPLE = pathlib.Path(__file__).parents[2] / 'examples' / 'observability'


def test_the_demo_prints_prometheus_metrics_and_spans() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / 'otel_agent.py')],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert 'a2a_scale_delivery_lag_milliseconds_count' in out
    assert 'a2a_scale_store_operations_total' in out
    assert 'a2a_scale.stream.deliver' in out
    assert 'a2a_scale.store.save' in out
    assert result.stderr == ''
