"""Liveness and readiness of a serving replica: ``/healthz`` and ``/readyz``.

Liveness says only that the process serves requests; a backend outage must
not make an orchestrator restart every replica at once. Readiness says that
the backend is healthy and that the replica is not draining, so a load
balancer stops sending it new requests as soon as either is false. The
backend's health is cached for a short time, so frequent probes from several
load balancers cost one backend check per period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from starlette.requests import Request

    from a2a_scale.backend import Backend

logger = logging.getLogger(__name__)

HEALTHZ_PATH = '/healthz'
READYZ_PATH = '/readyz'
PROBE_PATHS = frozenset({HEALTHZ_PATH, READYZ_PATH})
DEFAULT_HEALTH_TTL = 2.0
DEFAULT_HEALTH_TIMEOUT = 3.0


class Readiness:
    """Whether a replica should receive new requests.

    Not ready while draining, or while the backend's last health check
    failed. The check runs at most once per `ttl` seconds, however many
    probes arrive, and gives up after `timeout` seconds.
    """

    def __init__(
        self,
        backend: Backend | None,
        *,
        ttl: float = DEFAULT_HEALTH_TTL,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
    ) -> None:
        """Watches `backend`; `None` makes readiness depend on draining only."""
        self.backend = backend
        self.ttl = ttl
        self.timeout = timeout
        self.draining = False
        self._checked_at = float('-inf')
        self._result: tuple[bool, str] = (False, 'not checked')
        self._lock = asyncio.Lock()

    def start_draining(self) -> None:
        """Turns readiness off for good: the replica is shutting down."""
        self.draining = True

    async def check(self) -> tuple[bool, str]:
        """Returns ``(ready, reason)``; the reason names what is wrong."""
        if self.draining:
            return False, 'draining'
        if self.backend is None:
            return True, 'ok'
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                self._result = await self._probe(self.backend)
                self._checked_at = time.monotonic()
            result = self._result
        return (False, 'draining') if self.draining else result

    async def _probe(self, backend: Backend) -> tuple[bool, str]:
        if not backend.started:
            return False, f'the {backend.name} backend is not started'
        try:
            async with asyncio.timeout(self.timeout):
                reports = await backend.health()
        except TimeoutError:
            return (
                False,
                f'the {backend.name} backend did not answer in {self.timeout:g} s',
            )
        except Exception as e:  # an outage must read as "not ready", not a 500
            return False, f'the {backend.name} backend failed: {type(e).__name__}'
        failed = [r.component for r in reports if not r.ok]
        if failed:
            return False, f'unhealthy {backend.name} components: {", ".join(failed)}'
        return True, 'ok'


def probe_routes(readiness: Readiness) -> list[Route]:
    """The ``/healthz`` and ``/readyz`` routes over `readiness`."""

    async def healthz(request: Request) -> Response:
        del request
        return JSONResponse({'status': 'ok'})

    async def readyz(request: Request) -> Response:
        del request
        ready, reason = await readiness.check()
        if ready:
            return JSONResponse({'status': 'ready'})
        return JSONResponse({'status': 'not ready', 'reason': reason}, status_code=503)

    return [
        Route(HEALTHZ_PATH, healthz, methods=['GET', 'HEAD']),
        Route(READYZ_PATH, readyz, methods=['GET', 'HEAD']),
    ]


__all__ = [
    'DEFAULT_HEALTH_TTL',
    'HEALTHZ_PATH',
    'PROBE_PATHS',
    'READYZ_PATH',
    'Readiness',
    'probe_routes',
]
