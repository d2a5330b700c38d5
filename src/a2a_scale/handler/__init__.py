"""A cluster-ready `DefaultRequestHandler` built on a backend."""

from a2a_scale.handler.cluster import (
    DEFAULT_INTERRUPTED_TASK_TIMEOUT,
    ClusterRequestHandler,
    build_request_handler,
)

__all__ = [
    'DEFAULT_INTERRUPTED_TASK_TIMEOUT',
    'ClusterRequestHandler',
    'build_request_handler',
]
