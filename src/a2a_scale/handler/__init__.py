"""A cluster-ready `DefaultRequestHandler` built on a backend.

Importing it checks the installed a2a-sdk first (see `a2a_scale.sdk_compat`):
an SDK that lacks or changed a name the handler relies on raises
`a2a_scale.errors.UnsupportedSDKError` here, before any request is served.
"""

from a2a_scale import sdk_compat

sdk_compat.require()

from a2a_scale.handler.cluster import (  # noqa: E402
    DEFAULT_INTERRUPTED_TASK_TIMEOUT,
    ClusterRequestHandler,
    build_request_handler,
)
from a2a_scale.handler.running import (  # noqa: E402
    RESUME_STATE_KEY,
    resume_count,
)

__all__ = [
    'DEFAULT_INTERRUPTED_TASK_TIMEOUT',
    'RESUME_STATE_KEY',
    'ClusterRequestHandler',
    'build_request_handler',
    'resume_count',
]
