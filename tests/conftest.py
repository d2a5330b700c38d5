"""Project-wide pytest rules: service strictness and no empty green runs.

Tests that need an external service (a redis-server, a moto server) ask for
it with the `require_service` fixture or the `need_service` function:

    def test_x(require_service):
        require_service('redis', reachable('127.0.0.1', 6379), 'no redis-server')

Outside CI a missing service skips the test with the reason. Under ``CI=true``
or ``A2A_SCALE_REQUIRE_SERVICES=1`` it fails the test instead, so a CI run can
never go green by skipping what it promised to test.

A run in which no test passed fails too (``A2A_SCALE_ALLOW_EMPTY=1`` turns
that off for ad-hoc selections), so a misconfigured nox session cannot pass.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service_support import ALLOW_EMPTY_ENV, flag, need_service

_passed = 0


@pytest.fixture
def require_service() -> Callable[[str, bool, str], None]:
    """Returns `need_service`, for tests that prefer a fixture."""
    return need_service


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Counts passed tests (the call phase of each test)."""
    global _passed  # noqa: PLW0603
    if report.when == 'call' and report.passed:
        _passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails a run that otherwise succeeded without passing a single test."""
    config = session.config
    if config.option.collectonly or flag(ALLOW_EMPTY_ENV):
        return
    if hasattr(config, 'workerinput'):  # an xdist worker; the controller decides
        return
    if exitstatus == pytest.ExitCode.OK and _passed == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = config.pluginmanager.get_plugin('terminalreporter')
        if reporter is not None:
            reporter.write_line(
                f'ERROR: no test passed; an empty run is a failure '
                f'(set {ALLOW_EMPTY_ENV}=1 to allow it).',
                red=True,
                bold=True,
            )
