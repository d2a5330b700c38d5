"""Hook specifications for a2a-scale plugins.

A plugin is a module (or object) registered under the ``a2a_scale.backends``
entry-point group that implements one or more of these hooks::

    from a2a_scale import BackendSpec, hookimpl

    @hookimpl
    def register_backends(register):
        register(BackendSpec(name='mine', factory=..., settings_model=...))
"""

from collections.abc import Callable

import pluggy

from a2a_scale.registry import BackendSpec

hookspec = pluggy.HookspecMarker('a2a_scale')
hookimpl = pluggy.HookimplMarker('a2a_scale')


@hookspec
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Registers backends by calling ``register(spec)`` once per backend."""
