"""A traced and metered push-notification sender."""

from __future__ import annotations

from typing import Any

from a2a.server.tasks import PushNotificationSender
from opentelemetry.trace import SpanKind

from a2a_scale.telemetry.wrappers import ERROR, OK, Probe, failed


class TracedPushSender(PushNotificationSender):
    """A push sender that records a span per notification."""

    def __init__(self, inner: PushNotificationSender, probe: Probe) -> None:
        self.inner = inner
        self.probe = probe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send_notification(self, task_id: str, event: Any) -> None:  # noqa: D102
        probe = self.probe
        if not probe.inst.recording():
            await self.inner.send_notification(task_id, event)
            return
        with probe.tracer.start_as_current_span(
            'a2a_scale.push.send',
            kind=SpanKind.CLIENT,
            attributes=probe.attributes(task_id=task_id),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.inner.send_notification(task_id, event)
            except Exception as e:
                failed(span, e)
                span.set_attribute('a2a_scale.outcome', ERROR)
                probe.inst.pushes.add(
                    1, {**probe.metric_attributes, 'a2a_scale.outcome': ERROR}
                )
                raise
            span.set_attribute('a2a_scale.outcome', OK)
            probe.inst.pushes.add(
                1, {**probe.metric_attributes, 'a2a_scale.outcome': OK}
            )
