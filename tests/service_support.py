"""Service strictness shared by the conftests: skip locally, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_ENV = 'A2A_SCALE_REQUIRE_SERVICES'
ALLOW_EMPTY_ENV = 'A2A_SCALE_ALLOW_EMPTY'
_TRUE = {'1', 'true', 'yes', 'on'}


def flag(name: str) -> bool:
    """Whether environment variable `name` is set to a true value."""
    return os.environ.get(name, '').strip().lower() in _TRUE


def services_required() -> bool:
    """Whether a missing service is a failure (CI) rather than a skip."""
    return flag('CI') or flag(REQUIRE_ENV)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need_service(name: str, available: bool, reason: str = '') -> None:
    """Skips (locally) or fails (in CI) the current test if `name` is absent.

    Args:
        name: The service, e.g. ``'redis'`` or ``'moto_server'``.
        available: Whether the service was found.
        reason: What was tried, for the message.
    """
    if available:
        return
    message = f'{name} is not available' + (f': {reason}' if reason else '')
    if services_required():
        pytest.fail(
            f'{message} (required because CI or {REQUIRE_ENV} is set)',
            pytrace=False,
        )
    pytest.skip(message)
