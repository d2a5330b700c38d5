"""Errors raised by a2a-scale and its backends."""


class A2AScaleError(Exception):
    """Base class of every error a2a-scale raises on purpose."""


class ConfigurationError(A2AScaleError, ValueError):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class BackendNotFoundError(A2AScaleError, LookupError):
    """No installed plugin provides the requested backend."""

    def __init__(self, name: str, installed: list[str]) -> None:
        listed = ', '.join(sorted(installed)) or '(none)'
        super().__init__(
            f'Unknown a2a-scale backend {name!r} (A2A_SCALE_BACKEND). '
            f'Installed backends: {listed}.'
        )
        self.name = name
        self.installed = sorted(installed)


class CorruptDataError(A2AScaleError):
    """Stored bytes could not be decoded; the message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f'Corrupt data under key {key!r}: {reason}')
        self.key = key
        self.reason = reason


class PayloadTooLargeError(A2AScaleError, ValueError):
    """A payload exceeds a hard size limit of the backend."""

    def __init__(self, task_id: str, size: int, limit: int, what: str) -> None:
        super().__init__(
            f'{what} for task {task_id!r} is {size} bytes, over the {limit}-byte limit'
        )
        self.task_id = task_id
        self.size = size
        self.limit = limit


class BackendNotStartedError(A2AScaleError, RuntimeError):
    """A backend was used before `start()` (or `async with`)."""
