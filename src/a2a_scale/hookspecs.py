"""Hook specifications for a2a-scale plugins.

A plugin is a module (or object) registered under the ``a2a_scale.backends``
entry-point group that implements one or more of these hooks::

    from a2a_scale import BackendSpec, hookimpl

    @hookimpl
    def register_backends(register):
        register(BackendSpec(name='mine', factory=..., settings_model=...))
"""

from collections.abc import Callable
from typing import Any

import pluggy

from a2a_scale.registry import BackendSpec

hookspec = pluggy.HookspecMarker('a2a_scale')
hookimpl = pluggy.HookimplMarker('a2a_scale')


@hookspec
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Registers backends by calling ``register(spec)`` once per backend."""


@hookspec
def register_commands(app: Any) -> None:
    """Adds commands or command groups to the ``a2a-scale`` CLI.

    Args:
        app: The root ``typer.Typer`` application; a plugin typically calls
            ``app.add_typer(sub_app, name='aws')``.
    """
