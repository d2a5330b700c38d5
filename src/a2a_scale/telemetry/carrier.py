"""The trace context and save time that travel with an event in the log.

While telemetry is on, the event a replica saves is stored as its usual
`StreamResponse` bytes followed by one extra length-delimited field,
`FIELD_NUMBER`, which no A2A message defines. Protobuf parsers keep or skip
unknown fields, so the SDK, older a2a-scale versions and the SQL importers
read the event unchanged. The field holds::

    format (1 byte) | trace id (16) | span id (8) | trace flags (1) | saved at (8)

``saved at`` is the save's wall-clock time in microseconds since the epoch
(big-endian). A replica that delivers the event links its delivery span to
that trace context and measures the delivery lag from that time.

This module imports no OpenTelemetry module: the codec calls it on every
event, and with telemetry off it costs one context-variable read on encode
and one flag test on decode.
"""

from __future__ import annotations

import collections
import struct
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

FIELD_NUMBER = 0xA2A5C
"""The protobuf field number of the trailer (666204, "A2A Sc")."""

_FORMAT = 1
_BODY = struct.Struct('>B16s8sBq')


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_PREFIX = _varint(FIELD_NUMBER << 3 | 2) + _varint(_BODY.size)
TRAILER_SIZE = len(_PREFIX) + _BODY.size
"""How many bytes telemetry adds to a stored event."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where and when an event was saved."""

    trace_id: int
    span_id: int
    trace_flags: int
    saved_at_us: int

    @property
    def has_trace(self) -> bool:
        """Whether a valid span context was active at the save."""
        return self.trace_id != 0 and self.span_id != 0


def make_trailer(
    trace_id: int, span_id: int, trace_flags: int, saved_at_us: int
) -> bytes:
    """Encodes the trailer field for an event saved in the given span."""
    return _PREFIX + _BODY.pack(
        _FORMAT,
        trace_id.to_bytes(16, 'big'),
        span_id.to_bytes(8, 'big'),
        trace_flags & 0xFF,
        saved_at_us,
    )


def read_trailer(data: bytes) -> Origin | None:
    """Returns the origin carried at the end of `data`, if any."""
    if len(data) < TRAILER_SIZE or data[-TRAILER_SIZE : -_BODY.size] != _PREFIX:
        return None
    fmt, trace_id, span_id, flags, saved_at = _BODY.unpack_from(
        data, len(data) - _BODY.size
    )
    if fmt != _FORMAT:
        return None
    return Origin(
        int.from_bytes(trace_id, 'big'), int.from_bytes(span_id, 'big'), flags, saved_at
    )


OUTGOING: ContextVar[bytes | None] = ContextVar('a2a_scale_trailer', default=None)
"""The trailer `a2a_scale.codec.encode_event` appends, set around a save."""


class _DecodedOrigins:
    """Origins of recently decoded events, by event object.

    A decoded event is a protobuf message without room for extra data, and a
    backend may decode in a reader task and fan one object out to several
    subscribers, so the origin is kept here (with the event, so its id stays
    unique) until the traced stream hands the event over.
    """

    def __init__(self, size: int = 4096) -> None:
        self.active = False
        self._size = size
        self._items: collections.OrderedDict[int, tuple[Any, Origin]] = (
            collections.OrderedDict()
        )

    def note(self, event: Any, data: bytes) -> None:
        """Keeps the origin carried by `data`, if any, for `event`."""
        origin = read_trailer(data)
        if origin is None:
            return
        self._items[id(event)] = (event, origin)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, event: Any) -> Origin | None:
        """The origin noted for `event`, if any."""
        item = self._items.get(id(event))
        if item is None or item[0] is not event:
            return None
        return item[1]


DECODED = _DecodedOrigins()
"""Set `active` once a traced stream exists; the codec then notes origins."""


class SavedTrailers:
    """The trailers of this replica's recent saves, by task and version.

    The SDK publishes each event right after saving it; backends recognise
    that publish by comparing it with the logged event, so the publish must
    carry the very same trailer.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: collections.OrderedDict[tuple[str, Any], bytes] = (
            collections.OrderedDict()
        )

    def remember(self, task_id: str, version: Any, trailer: bytes) -> None:
        """Keeps the trailer of the save that produced `version`."""
        self._items[(task_id, version)] = trailer
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def take(self, task_id: str, version: Any) -> bytes | None:
        """Returns and forgets the trailer of that save, if still kept."""
        return self._items.pop((task_id, version), None)
