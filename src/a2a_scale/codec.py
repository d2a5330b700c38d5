"""Byte encodings of tasks and events shared by every backend.

Tasks are stored as serialized `Task` protos; events as serialized
`StreamResponse` protos, the same bytes the SDK's SQL store writes.
"""

from __future__ import annotations

from a2a.server.events.event_queue import Event
from a2a.types.a2a_pb2 import StreamResponse, Task
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.message import DecodeError

from a2a_scale.errors import CorruptDataError
from a2a_scale.telemetry.carrier import DECODED, OUTGOING


def encode_task(task: Task) -> bytes:
    """Serializes a task."""
    return task.SerializeToString()


def decode_task(data: bytes, *, key: str) -> Task:
    """Parses a task stored under `key`.

    Raises:
        CorruptDataError: naming `key`, if the bytes are not a task.
    """
    task = Task()
    try:
        task.ParseFromString(data)
    except (DecodeError, TypeError, ValueError) as e:
        raise CorruptDataError(key, f'not a serialized Task ({e})') from None
    if not task.id:
        raise CorruptDataError(key, 'the stored Task has no id')
    return task


def encode_event(event: Event) -> bytes:
    """Serializes an event as a `StreamResponse`.

    While telemetry is on, an event saved or published through a traced
    store carries its trace context in an extra field that readers skip
    (see `a2a_scale.telemetry.carrier`).
    """
    data = to_stream_response(event).SerializeToString()
    trailer = OUTGOING.get()
    return data + trailer if trailer else data


def stream_response_to_event(response: StreamResponse) -> Event:
    """Returns the event a `StreamResponse` carries.

    The SDK has the same function in its SQL event stream module, which
    imports SQLAlchemy; this one keeps the core free of that dependency.

    Raises:
        ValueError: If no payload is set.
    """
    which = response.WhichOneof('payload')
    if which == 'task':
        return response.task
    if which == 'message':
        return response.message
    if which == 'status_update':
        return response.status_update
    if which == 'artifact_update':
        return response.artifact_update
    raise ValueError(f'the StreamResponse has no known payload ({which!r})')


def decode_event(data: bytes, *, key: str) -> Event:
    """Parses an event stored under `key`.

    Raises:
        CorruptDataError: naming `key`, if the bytes are not an event.
    """
    response = StreamResponse()
    try:
        response.ParseFromString(data)
        event = stream_response_to_event(response)
    except (DecodeError, TypeError, ValueError) as e:
        raise CorruptDataError(key, f'not a serialized event ({e})') from None
    if DECODED.active:
        DECODED.note(event, data)
    return event
