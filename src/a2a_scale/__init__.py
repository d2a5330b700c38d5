"""a2a-scale: run A2A SDK servers as many replicas over shared backends."""

from a2a_scale.api import load_backend
from a2a_scale.backend import Backend
from a2a_scale.errors import (
    A2AScaleError,
    BackendNotFoundError,
    BackendNotStartedError,
    ConfigurationError,
    CorruptDataError,
    PayloadTooLargeError,
)
from a2a_scale.handler import ClusterRequestHandler, build_request_handler
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

__version__ = '0.1.0'

__all__ = [
    'A2AScaleError',
    'Backend',
    'BackendNotFoundError',
    'BackendNotStartedError',
    'BackendSpec',
    'ClusterRequestHandler',
    'ComponentHealth',
    'ConfigurationError',
    'CorruptDataError',
    'PayloadTooLargeError',
    'QueueLifecycle',
    'ScaleSettings',
    '__version__',
    'available_backends',
    'build_request_handler',
    'hookimpl',
    'load_backend',
    'load_settings',
    'plugin_settings_config',
]
