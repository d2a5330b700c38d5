"""The aws backend (not implemented yet: see its issue)."""

from typing import NoReturn


def create_backend(*args: object, **kwargs: object) -> NoReturn:
    """Raises: the aws backend is registered but not implemented yet."""
    raise NotImplementedError(
        'The aws backend is registered but not implemented in this release.'
    )
