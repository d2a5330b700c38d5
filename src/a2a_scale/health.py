"""Health reports of a backend's components."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentHealth:
    """The health of one component of a backend."""

    component: str
    ok: bool
    detail: str = ''
    latency_ms: float | None = None

    def line(self) -> str:
        """Renders the report as one line."""
        status = 'ok' if self.ok else 'FAIL'
        latency = f' ({self.latency_ms:.1f} ms)' if self.latency_ms is not None else ''
        detail = f': {self.detail}' if self.detail else ''
        return f'{self.component:<18} {status}{latency}{detail}'
