"""`load_backend`: the one call that turns settings into a backend."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale.errors import ConfigurationError
from a2a_scale.plugins import get_backend_spec
from a2a_scale.settings import ScaleSettings, load_settings

if TYPE_CHECKING:
    import pluggy

    from a2a_scale.backend import Backend


def _import_resolver(path: str) -> OwnerResolver:
    module_name, _, attr = path.partition(':')
    try:
        resolver = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigurationError(
            f'A2A_SCALE_OWNER_RESOLVER={path!r} cannot be imported: {e}',
            variable='A2A_SCALE_OWNER_RESOLVER',
        ) from None
    if not callable(resolver):
        raise ConfigurationError(
            f'A2A_SCALE_OWNER_RESOLVER={path!r} is not callable',
            variable='A2A_SCALE_OWNER_RESOLVER',
        )
    return resolver


def load_backend(
    name: str | None = None,
    *,
    owner_resolver: OwnerResolver | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    **overrides: Any,
) -> Backend:
    """Builds a backend from settings; does no I/O.

    Args:
        name: The backend name; defaults to ``A2A_SCALE_BACKEND`` (``memory``).
        owner_resolver: Scopes tasks and push configs to a caller; defaults
            to ``A2A_SCALE_OWNER_RESOLVER`` or the SDK's `resolve_user_scope`.
        plugin_manager: A plugin manager to use instead of the global one.
        **overrides: Settings that win over the environment, for the core
            (``namespace=...``) or the backend (``url=...``), and ready
            objects the backend's factory accepts instead of settings: the
            ``redis`` backend takes ``client=`` (a ``redis.asyncio`` client
            it will not close), the ``aws`` backend ``session=`` (an
            ``aioboto3.Session``).

    Returns:
        The backend, to be started with ``async with backend:``.

    Raises:
        BackendNotFoundError: If no installed plugin provides `name`.
        ConfigurationError: If a setting is invalid, naming its variable.
        ImportError: If the backend's driver is missing, naming the extra.
    """
    core_fields = set(ScaleSettings.model_fields)
    core_overrides = {k: v for k, v in overrides.items() if k in core_fields}
    if name is not None:
        core_overrides['backend'] = name
    core = load_settings(ScaleSettings, **core_overrides)
    spec = get_backend_spec(core.backend, plugin_manager)
    plugin_fields = set(spec.settings_model.model_fields)
    plugin_overrides = {k: v for k, v in overrides.items() if k in plugin_fields}
    objects = {
        k: v
        for k, v in overrides.items()
        if k not in core_fields and k not in plugin_fields
    }
    accepted = _object_keywords(spec.resolve_factory()) if objects else set()
    unknown = set(objects) - accepted
    if unknown:
        known = sorted(core_fields | plugin_fields)
        takes = f' Objects it takes: {", ".join(sorted(accepted))}.' if accepted else ''
        raise ConfigurationError(
            f'Unknown setting(s) for the {spec.name!r} backend: '
            f'{", ".join(sorted(unknown))}. Known: {", ".join(known)}.{takes}'
        )
    plugin_settings = load_settings(spec.settings_model, **plugin_overrides)
    factory = spec.resolve_factory()
    if owner_resolver is None:
        owner_resolver = (
            _import_resolver(core.owner_resolver)
            if core.owner_resolver
            else resolve_user_scope
        )
    return factory(core, plugin_settings, owner_resolver=owner_resolver, **objects)


def _object_keywords(factory: Any) -> set[str]:
    """The keyword-only parameters a backend factory takes besides settings."""
    parameters = inspect.signature(factory).parameters.values()
    return {
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != 'owner_resolver'
    }
