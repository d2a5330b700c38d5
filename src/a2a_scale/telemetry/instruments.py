"""The tracer and the metric instruments (imported only while telemetry is on).

Both come from the global OpenTelemetry providers, the ones the A2A SDK's
own spans use: an application that sets a tracer or meter provider, before
or after a2a-scale starts, gets a2a-scale's spans and metrics there too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

SCOPE = 'a2a_scale'
"""The instrumentation scope of every span and metric."""

RECHECK_SECONDS = 1.0
"""How often an `Instruments` without a provider looks for one installed
since: a provider installed after the first call is used within this time."""

MS_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
"""Histogram buckets (ms) suggested to the SDK; views can override them."""


class Gauges:
    """Latest values of gauges that a2a-scale sets while it runs.

    Observable gauges are read by the exporter's thread; values set from the
    event loop are kept here, by metric name and attributes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}

    def set(self, name: str, value: float, attributes: Mapping[str, Any]) -> None:
        """Sets gauge `name` for `attributes` to `value`."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            self._values.setdefault(name, {})[key] = value

    def callback(self, name: str) -> Any:
        """The observable-gauge callback reporting gauge `name`."""

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            del options
            with self._lock:
                items = list(self._values.get(name, {}).items())
            return [Observation(value, dict(key)) for key, value in items]

        return observe


class Instruments:
    """The tracer and every instrument a2a-scale records to."""

    _recording: bool
    _next_check: float
    _own_meter_provider: bool
    _own_tracer_provider: bool

    def metrics_on(self) -> bool:
        """Whether the metrics go to a real meter provider."""
        return self._own_meter_provider or meter_provider_is_set()

    def recording(self) -> bool:
        """Whether a real tracer or meter provider is installed.

        Until one is, the traced wrappers pass every call straight through:
        an application with the API but no SDK pays a clock read per call,
        and a look at the providers at most every `RECHECK_SECONDS` (each
        look reads the environment). Providers are installed once, so a true
        answer is kept.
        """
        if not self._recording:
            now = time.monotonic()
            if now < self._next_check:
                return False
            self._next_check = now + RECHECK_SECONDS
            self._recording = (
                self._own_tracer_provider
                or tracer_provider_is_set()
                or self.metrics_on()
            )
        return self._recording

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        """Creates them from the given providers, by default the global ones."""
        from a2a_scale import __version__  # noqa: PLC0415

        self._own_meter_provider = meter_provider is not None
        self._own_tracer_provider = tracer_provider is not None
        self._recording = False
        self._next_check = 0.0
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self.gauges = Gauges()
        self.operations = meter.create_counter(
            'a2a_scale.store.operations',
            unit='{operation}',
            description='Store and stream operations, by operation and outcome.',
        )
        self.conflicts = meter.create_counter(
            'a2a_scale.store.conflicts',
            unit='{conflict}',
            description='Saves refused because another writer saved first.',
        )
        self.duration = meter.create_histogram(
            'a2a_scale.store.duration',
            unit='ms',
            explicit_bucket_boundaries_advisory=MS_BUCKETS,
            description='Duration of store and stream operations.',
        )
        self.lag = meter.create_histogram(
            'a2a_scale.delivery.lag',
            unit='ms',
            explicit_bucket_boundaries_advisory=MS_BUCKETS,
            description='From the save of an event to its hand-over to a '
            'subscriber on this replica.',
        )
        self.subscriptions = meter.create_up_down_counter(
            'a2a_scale.subscriptions.active',
            unit='{subscription}',
            description='Open event-stream subscriptions on this replica.',
        )
        self.retries = meter.create_counter(
            'a2a_scale.backend.retries',
            unit='{retry}',
            description='Backend operations retried after a transient failure.',
        )
        self.reconnects = meter.create_counter(
            'a2a_scale.backend.reconnects',
            unit='{reconnect}',
            description='Connections or subscriptions a backend re-established.',
        )
        self.reaped = meter.create_counter(
            'a2a_scale.replicas.reaped',
            unit='{replica}',
            description='Dead replicas whose resources this replica released.',
        )
        self.recovered = meter.create_counter(
            'a2a_scale.tasks.recovered',
            unit='{task}',
            description='Tasks of dead replicas recovered here, by policy.',
        )
        self.pushes = meter.create_counter(
            'a2a_scale.push.sends',
            unit='{notification}',
            description='Push notifications handed to the sender, by outcome.',
        )
        for name, description in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[self.gauges.callback(name)], description=description
            )


GAUGES = {
    'a2a_scale.replicas.live': 'Replicas whose heartbeat is recent, as seen here.',
    'a2a_scale.backend.queue_depth': 'Messages waiting in a per-replica queue.',
    'a2a_scale.backend.stream_length': 'Entries in the longest event log among '
    'the tasks followed on this replica (Redis).',
}
"""Gauges set with `a2a_scale.telemetry.set_gauge`."""


@cache
def get() -> Instruments:
    """The process's instruments, created at first use."""
    return Instruments()


def tracer_provider_is_set() -> bool:
    """Whether an application installed a tracer provider (not the default)."""
    provider = trace.get_tracer_provider()
    return type(provider).__name__ not in ('ProxyTracerProvider', 'NoOpTracerProvider')


def meter_provider_is_set() -> bool:
    """Whether an application installed a meter provider (not the default)."""
    provider = metrics.get_meter_provider()
    return type(provider).__name__ not in ('_ProxyMeterProvider', 'NoOpMeterProvider')
