"""Errors raised by a2a-scale and its backends."""

from a2a.server.cluster import ConcurrentTaskModificationError


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


class PermanentStoreError(A2AScaleError):
    """A store refused an operation that retrying cannot make succeed.

    The payload is over a hard limit of the backend, or the stored data is
    corrupt. A task whose agent update is refused this way ends FAILED, with
    the reason in its status message, instead of staying where it was.
    """


class CorruptDataError(PermanentStoreError):
    """Stored bytes could not be decoded; the message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f'Corrupt data under key {key!r}: {reason}')
        self.key = key
        self.reason = reason


class PayloadTooLargeError(PermanentStoreError, ValueError):
    """A payload exceeds a hard size limit of the backend."""

    def __init__(self, task_id: str, size: int, limit: int, what: str) -> None:
        super().__init__(
            f'{what} for task {task_id!r} is {size} bytes, over the {limit}-byte limit'
        )
        self.task_id = task_id
        self.size = size
        self.limit = limit


class EventGapError(A2AScaleError, LookupError):
    """A subscription cannot deliver every event after its position.

    A subscription raises it from its iteration instead of skipping events:
    when its subscriber fell behind the retained event log, when an entry of
    the log cannot be decoded, or when the log was deleted under it. The
    stream ends; the client reads the task again and subscribes from there.

    Attributes:
        task_id: The task of the subscription.
        position: The last position (task version or log entry id) the
            subscriber received.
        reason: What made the gap, for example that the log was trimmed.
    """

    def __init__(self, task_id: str, *, position: object, reason: str) -> None:
        super().__init__(
            f'Events of task {task_id[:200]!r} after position {position} cannot '
            f'be delivered: {reason}; read the task and subscribe again'
        )
        self.task_id = task_id
        self.position = position
        self.reason = reason


class TerminalTaskError(A2AScaleError, ConcurrentTaskModificationError):
    """A save would move a task out of its terminal state.

    A terminal state (COMPLETED, CANCELED, FAILED, REJECTED) is final: a
    re-save that keeps the same terminal state at the current version is
    accepted, a save to any other state is refused with this error. It is a
    `ConcurrentTaskModificationError`, so the SDK handles it as it handles a
    writer that lost a race: it reloads the task, sees it finished and stops
    (a cancel of a finished task becomes `TaskNotCancelableError`).

    Attributes:
        task_id: The task.
        state: The stored terminal state, as its enum name.
        requested: The state the refused save asked for, as its enum name.
    """

    def __init__(self, task_id: str, *, state: str, requested: str) -> None:
        super().__init__(task_id)
        self.args = (
            f'Task {task_id[:200]!r} is {state}, a terminal state: a save to '
            f'{requested} is refused (only a re-save in {state} is accepted)',
        )
        self.state = state
        self.requested = requested


class FollowUpTimeoutError(A2AScaleError, TimeoutError):
    """A follow-up waited too long for its task to accept a message.

    A task takes one follow-up at a time: another one waits until the task
    is interrupted again (for example input-required). This one waited
    `waited` seconds (``follow_up_wait``) while the task stayed `state`; it
    was not applied, and sending it again later is safe.

    Attributes:
        task_id: The task.
        state: The task's state when the wait ran out, as its enum name.
        waited: The limit, in seconds.
    """

    def __init__(self, task_id: str, *, state: str, waited: float) -> None:
        super().__init__(
            f'Task {task_id[:200]!r} did not accept the message within the '
            f'follow_up_wait limit of {waited:g} s (it is {state}, running '
            f'another turn); the message was not applied, send it again later'
        )
        self.task_id = task_id
        self.state = state
        self.waited = waited


class InvalidTaskIdError(A2AScaleError, ValueError):
    """A task id cannot be stored (for example, it is empty).

    Attributes:
        task_id: The refused id.
        reason: Why it is refused.
    """

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f'Invalid task id {task_id[:200]!r}: {reason}')
        self.task_id = task_id
        self.reason = reason


class BackendUnavailableError(A2AScaleError, ConnectionError):
    """A backend's service cannot be reached; the message names the address.

    Attributes:
        address: Where the backend tried to connect, with any password
            replaced by ``***``.
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class BackendNotStartedError(A2AScaleError, RuntimeError):
    """A backend was used before `start()` (or `async with`)."""


class UnsupportedSDKError(A2AScaleError, ImportError):
    """The installed a2a-sdk lacks or changed a name a2a-scale relies on.

    Attributes:
        problems: One line per missing or changed SDK name.
        installed: The installed a2a-sdk version.
        supported: The a2a-sdk versions this a2a-scale supports, as a
            requirement specifier.
    """

    def __init__(self, problems: list[str], *, installed: str, supported: str) -> None:
        listed = ''.join(f'\n  - {problem}' for problem in problems)
        super().__init__(
            f'a2a-scale does not support the installed a2a-sdk {installed} '
            f'(supported: a2a-sdk{supported}); {problems[0]}'
            + (f'\nAll {len(problems)} problems:{listed}' if len(problems) > 1 else '')
            + f'\nInstall a supported version: pip install "a2a-sdk{supported}"'
        )
        self.problems = list(problems)
        self.installed = installed
        self.supported = supported
