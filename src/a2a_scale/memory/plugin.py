"""Registers the embedded ``memory`` backend (a built-in plugin)."""

from collections.abc import Callable

from a2a_scale.hookspecs import hookimpl
from a2a_scale.memory.settings import MemorySettings
from a2a_scale.registry import BackendSpec


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Registers the memory backend."""
    register(
        BackendSpec(
            name='memory',
            factory='a2a_scale.memory.backend:create_backend',
            settings_model=MemorySettings,
            description=(
                'In-process state shared by every replica in the same '
                'process; for tests, demos and single-process servers.'
            ),
        )
    )
