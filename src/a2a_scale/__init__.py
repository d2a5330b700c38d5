"""a2a-scale: run A2A SDK servers as many replicas over shared backends."""

from typing import TYPE_CHECKING, Any

from a2a_scale.api import load_backend
from a2a_scale.backend import Backend
from a2a_scale.errors import (
    A2AScaleError,
    BackendNotFoundError,
    BackendNotStartedError,
    BackendUnavailableError,
    ConfigurationError,
    CorruptDataError,
    EventGapError,
    FollowUpTimeoutError,
    InvalidTaskIdError,
    PayloadTooLargeError,
    PermanentStoreError,
    TerminalTaskError,
    UnsupportedSDKError,
)
from a2a_scale.health import ComponentHealth
from a2a_scale.hookspecs import hookimpl
from a2a_scale.lifecycle import QueueLifecycle
from a2a_scale.plugins import available_backends
from a2a_scale.registry import BackendSpec
from a2a_scale.settings import (
    ScaleSettings,
    load_settings,
    plugin_settings_config,
)

if TYPE_CHECKING:
    from a2a_scale.handler import ClusterRequestHandler, build_request_handler

__version__ = '0.1.0'

__all__ = [
    'A2AScaleError',
    'Backend',
    'BackendNotFoundError',
    'BackendNotStartedError',
    'BackendSpec',
    'BackendUnavailableError',
    'ClusterRequestHandler',
    'ComponentHealth',
    'ConfigurationError',
    'CorruptDataError',
    'EventGapError',
    'FollowUpTimeoutError',
    'InvalidTaskIdError',
    'PayloadTooLargeError',
    'PermanentStoreError',
    'QueueLifecycle',
    'ScaleSettings',
    'TerminalTaskError',
    'UnsupportedSDKError',
    '__version__',
    'available_backends',
    'build_request_handler',
    'hookimpl',
    'load_backend',
    'load_settings',
    'plugin_settings_config',
]


def __getattr__(name: str) -> Any:
    """Imports the handler on first use: it checks the installed a2a-sdk.

    So ``import a2a_scale`` (and the CLI) works on an unsupported SDK, while
    using the handler raises `UnsupportedSDKError`.
    """
    if name in ('ClusterRequestHandler', 'build_request_handler'):
        from a2a_scale import handler  # noqa: PLC0415

        return getattr(handler, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
