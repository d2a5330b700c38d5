"""Plugin discovery with pluggy.

Backends are registered by plugins found under the ``a2a_scale.backends``
entry-point group. The embedded ``memory`` backend is a built-in plugin. The
entry points are scanned lazily, once per process, on first use.
``A2A_SCALE_PLUGINS`` (a comma-separated list of entry-point names) restricts
which of them load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading

import pluggy

from a2a_scale import hookspecs
from a2a_scale.errors import BackendNotFoundError, ConfigurationError
from a2a_scale.registry import BackendSpec

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = 'a2a_scale.backends'
ALLOWLIST_ENV = 'A2A_SCALE_PLUGINS'

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def parse_allowlist(value: str | None) -> set[str] | None:
    """Parses ``A2A_SCALE_PLUGINS``; `None` means every plugin is allowed."""
    if value is None or not value.strip():
        return None
    return {name.strip() for name in value.split(',') if name.strip()}


def create_plugin_manager(
    *, load_entry_points: bool = True, allowlist: set[str] | None = None
) -> pluggy.PluginManager:
    """Builds a fresh plugin manager with the built-in plugins registered.

    Args:
        load_entry_points: Whether to scan the ``a2a_scale.backends`` group.
        allowlist: Entry-point names that may load; `None` allows all.
    """
    from a2a_scale.memory import plugin as memory_plugin  # noqa: PLC0415

    pm = pluggy.PluginManager('a2a_scale')
    pm.add_hookspecs(hookspecs)
    pm.register(memory_plugin, name='memory')
    if load_entry_points:
        if allowlist is not None:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name not in allowlist:
                    pm.set_blocked(ep.name)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """Returns the process-wide plugin manager, loading plugins on first use."""
    global _manager  # noqa: PLW0603
    with _lock:
        if _manager is None:
            _manager = create_plugin_manager(
                allowlist=parse_allowlist(os.environ.get(ALLOWLIST_ENV))
            )
        return _manager


def reset_plugin_manager() -> None:
    """Forgets the process-wide plugin manager (for tests)."""
    global _manager  # noqa: PLW0603
    with _lock:
        _manager = None


def available_backends(
    pm: pluggy.PluginManager | None = None,
) -> dict[str, BackendSpec]:
    """Returns every registered backend by name.

    Raises:
        ConfigurationError: If two plugins register the same backend name.
    """
    pm = pm or get_plugin_manager()
    specs: dict[str, BackendSpec] = {}

    def register(spec: BackendSpec) -> None:
        if not isinstance(spec, BackendSpec):
            raise TypeError(
                f'register_backends expects a BackendSpec, got {type(spec)!r}'
            )
        if spec.name in specs:
            raise ConfigurationError(
                f'Backend {spec.name!r} is registered by two plugins; '
                f'restrict them with {ALLOWLIST_ENV}.',
                variable=ALLOWLIST_ENV,
            )
        specs[spec.name] = spec

    pm.hook.register_backends(register=register)
    return specs


def get_backend_spec(name: str, pm: pluggy.PluginManager | None = None) -> BackendSpec:
    """Returns the spec of backend `name`.

    Raises:
        BackendNotFoundError: listing the installed backends.
    """
    specs = available_backends(pm)
    try:
        return specs[name]
    except KeyError:
        raise BackendNotFoundError(name, list(specs)) from None
