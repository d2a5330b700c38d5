"""Task-state rules, `ListTasks` helpers and save bookkeeping for backends."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import ListTasksRequest, Task, TaskState
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import (
    ListTasksCursor,
    decode_list_tasks_cursor,
    decode_page_token,
    encode_list_tasks_cursor,
)

from a2a_scale.errors import InvalidTaskIdError, TerminalTaskError
from a2a_scale.sdk_compat import task_version_value

TERMINAL_STATES = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
    }
)
INTERRUPTED_STATES = frozenset(
    {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}
)

SortKey = tuple[bool, int, str]


def is_terminal(state: int) -> bool:
    """Whether a task in `state` can no longer change."""
    return state in TERMINAL_STATES


def status_timestamp_ns(task: Task) -> int | None:
    """The task's status timestamp in ns, or `None` when it has none."""
    if task.HasField('status') and task.status.HasField('timestamp'):
        return task.status.timestamp.ToNanoseconds()
    return None


def sort_key(task: Task) -> SortKey:
    """`ListTasks` order key; tasks are listed by it, descending."""
    ts = status_timestamp_ns(task)
    return (ts is not None, ts or 0, task.id)


def cursor_for(task: Task) -> str:
    """The page token that resumes a listing after `task`."""
    ts = status_timestamp_ns(task)
    return encode_list_tasks_cursor(ListTasksCursor(timestamp_ns=ts, task_id=task.id))


@dataclass(frozen=True)
class ListQuery:
    """A validated `ListTasksRequest`."""

    context_id: str
    state: int
    timestamp_after_ns: int | None
    page_size: int
    after: SortKey | None
    legacy_start_id: str | None

    @classmethod
    def from_request(cls, params: ListTasksRequest) -> ListQuery:
        """Validates `params`; raises `InvalidParamsError` on a bad token."""
        after: SortKey | None = None
        legacy: str | None = None
        if params.page_token:
            cursor = decode_list_tasks_cursor(params.page_token)
            if cursor is None:
                legacy = decode_page_token(params.page_token)
                if not legacy:
                    raise InvalidParamsError(f'Invalid page token: {params.page_token}')
            else:
                after = cursor.sort_key()
        return cls(
            context_id=params.context_id,
            state=params.status,
            timestamp_after_ns=(
                params.status_timestamp_after.ToNanoseconds()
                if params.HasField('status_timestamp_after')
                else None
            ),
            page_size=params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE,
            after=after,
            legacy_start_id=legacy,
        )

    def matches(self, task: Task) -> bool:
        """Whether `task` passes the filters (not the cursor)."""
        if self.context_id and task.context_id != self.context_id:
            return False
        if self.state and task.status.state != self.state:
            return False
        if self.timestamp_after_ns is not None:
            ts = status_timestamp_ns(task)
            if ts is None or ts < self.timestamp_after_ns:
                return False
        return True


def paginate(
    query: ListQuery, tasks: Iterable[Task]
) -> tuple[list[Task], str | None, int]:
    """Filters, orders and pages `tasks` in memory.

    Returns:
        The page, the next page token (or `None`) and the total count after
        filtering.

    Raises:
        InvalidParamsError: If a legacy page token names an unknown task.
    """
    ordered = sorted((t for t in tasks if query.matches(t)), key=sort_key, reverse=True)
    total = len(ordered)
    start = 0
    if query.after is not None:
        start = next(
            (i for i, t in enumerate(ordered) if sort_key(t) < query.after),
            total,
        )
    elif query.legacy_start_id is not None:
        start = next(
            (i for i, t in enumerate(ordered) if t.id == query.legacy_start_id),
            -1,
        )
        if start < 0:
            raise InvalidParamsError(
                f'Invalid page token: unknown task {query.legacy_start_id!r}'
            )
    end = start + query.page_size
    page = ordered[start:end]
    token = cursor_for(ordered[end - 1]) if end < total else None
    return page, token, total


def version_int(version: TaskVersion) -> int:
    """The integer a2a-scale backends wrap in a `TaskVersion` (0 for MISSING).

    Raises:
        TypeError: If `version` wraps something other than an int.
    """
    value = task_version_value(version)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f'a2a-scale backends use integer task versions, got {version!r}'
        )
    return value


def check_task_id(task_id: str) -> None:
    """Refuses a task id no backend can store.

    Raises:
        InvalidTaskIdError: If `task_id` is empty.
    """
    if not task_id:
        raise InvalidTaskIdError(task_id, 'a task id must not be empty')


def check_terminal_save(task_id: str, stored_state: int, state: int) -> None:
    """Applies the finished-task rule to a save at the current version.

    A terminal state is final: a save that keeps it is accepted, a save that
    moves the task to any other state is refused. (A CANCELED write over a
    terminal task is refused before this, by the SDK's cancel rule.)

    Raises:
        TerminalTaskError: If `stored_state` is terminal and `state` differs.
    """
    if is_terminal(stored_state) and state != stored_state:
        raise TerminalTaskError(
            task_id,
            state=TaskState.Name(stored_state),
            requested=TaskState.Name(state),
        )


class LoggedEvents:
    """The (task, version) pairs whose event this replica's saves logged.

    A backend whose save also appends the event to the task's log records
    each one here; its event stream's ``publish`` then skips them, since
    the SDK publishes every saved event again right after the save.

    Args:
        capacity: How many pairs are kept (the oldest are forgotten).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def add(self, task_id: str, version: int) -> None:
        """Records that the event of `version` is in the log."""
        self._seen[(task_id, version)] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def pop(self, task_id: str, version: int) -> bool:
        """Whether the event was logged; forgets it."""
        return self._seen.pop((task_id, version), False) is None
