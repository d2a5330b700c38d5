"""Whether telemetry is on: the one place that looks for OpenTelemetry.

Telemetry is on when the OpenTelemetry API is installed (the ``otel`` extra)
and ``A2A_SCALE_TELEMETRY`` is not ``off``. When it is off, nothing here or
elsewhere in a2a-scale imports an ``opentelemetry`` module, and no store or
stream is wrapped.
"""

from __future__ import annotations

import importlib.util
import os

from a2a_scale.errors import ConfigurationError

ENV = 'A2A_SCALE_TELEMETRY'
"""``auto`` (the default: on when the API is installed), ``on`` or ``off``."""

_state: bool | None = None


def api_installed() -> bool:
    """Whether the OpenTelemetry API can be imported (without importing it)."""
    try:
        # Only the top-level namespace is looked up: a dotted name would
        # import the parent package.
        spec = importlib.util.find_spec('opentelemetry')
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    # `opentelemetry` is a namespace package; the API ships `trace/`.
    return any(
        os.path.isdir(os.path.join(path, 'trace'))
        for path in (spec.submodule_search_locations or ())
    )


def enabled() -> bool:
    """Whether a2a-scale emits spans and metrics (decided once, then cached).

    Raises:
        ConfigurationError: naming ``A2A_SCALE_TELEMETRY``, if it is not
            ``auto``, ``on`` or ``off``, or is ``on`` without the API.
    """
    global _state  # noqa: PLW0603
    if _state is None:
        _state = _decide(os.environ.get(ENV, 'auto').strip().lower() or 'auto')
    return _state


def set_enabled(value: bool | None) -> None:
    """Forces telemetry on or off; `None` decides again from the environment.

    For tests and benchmarks: it applies to request handlers built afterwards.
    """
    global _state  # noqa: PLW0603
    _state = None if value is None else bool(value and _decide('on'))


def _decide(mode: str) -> bool:
    if mode == 'off':
        return False
    if mode not in ('auto', 'on'):
        raise ConfigurationError(
            f'Invalid {ENV}={mode!r}: use auto, on or off', variable=ENV
        )
    installed = api_installed()
    if mode == 'on' and not installed:
        raise ConfigurationError(
            f'{ENV}=on needs the OpenTelemetry API: pip install "a2a-scale[otel]"',
            variable=ENV,
        )
    return installed
