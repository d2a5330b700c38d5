"""The redis backend (not implemented yet: see its issue)."""

from typing import NoReturn


def create_backend(*args: object, **kwargs: object) -> NoReturn:
    """Raises: the redis backend is registered but not implemented yet."""
    raise NotImplementedError(
        'The redis backend is registered but not implemented in this release.'
    )
