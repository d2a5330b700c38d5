"""Payload sizes: compression and the hard limits of DynamoDB and SNS.

Tasks and events are stored as protobuf bytes in DynamoDB items, compressed
with zlib above a threshold. Events never travel through SNS: a notification
only names the task and version (a doorbell), and subscribers read the event
item, so every event is carried by reference and the SNS limit never binds.
"""

from __future__ import annotations

import zlib
from typing import Any

from a2a_scale import CorruptDataError, InvalidTaskIdError, PayloadTooLargeError

DYNAMODB_ITEM_LIMIT = 400 * 1024
# Room kept for the keys and the other attributes of an item.
ITEM_OVERHEAD = 4 * 1024
PAYLOAD_LIMIT = DYNAMODB_ITEM_LIMIT - ITEM_OVERHEAD
SNS_MESSAGE_LIMIT = 256 * 1024
# Task ids land in the list indexes' sort keys (at most 1024 bytes), after a
# 23-byte ordering prefix.
TASK_ID_LIMIT = 1000


def pack(data: bytes, *, threshold: int) -> tuple[bytes, bool]:
    """Compresses `data` when larger than `threshold` and it helps.

    Returns:
        The bytes to store and whether they are compressed.
    """
    if len(data) <= threshold:
        return data, False
    compressed = zlib.compress(data, 6)
    if len(compressed) >= len(data):
        return data, False
    return compressed, True


def unpack(data: bytes, *, compressed: bool, key: str) -> bytes:
    """Reverses `pack`; raises `CorruptDataError` naming `key`."""
    if not compressed:
        return data
    try:
        return zlib.decompress(data)
    except zlib.error as e:
        raise CorruptDataError(key, f'bad zlib data ({e})') from None


def check_payload(task_id: str, payload: bytes, *, what: str) -> None:
    """Raises `PayloadTooLargeError` if `payload` cannot fit in an item.

    Args:
        task_id: The task, named in the error.
        payload: The (possibly compressed) bytes to store.
        what: What the payload is, e.g. ``'Task'`` or ``'Event 12'``.
    """
    if len(payload) > PAYLOAD_LIMIT:
        raise PayloadTooLargeError(
            task_id,
            len(payload),
            PAYLOAD_LIMIT,
            f'{what} (after compression; DynamoDB item limit 400 KB)',
        )


def _value_size(value: dict[str, Any]) -> int:
    kind, data = next(iter(value.items()))
    if kind == 'S':
        return len(data.encode('utf-8'))
    if kind == 'B':
        return len(data)
    if kind == 'N':
        return len(data) + 1  # an upper bound of DynamoDB's number size
    return 1  # BOOL, NULL


def item_size(item: dict[str, Any]) -> int:
    """The size DynamoDB counts against its item limit (names plus values)."""
    return sum(len(name.encode('utf-8')) + _value_size(v) for name, v in item.items())


def check_item(task_id: str, item: dict[str, Any], *, what: str) -> None:
    """Raises `PayloadTooLargeError` if `item` exceeds the DynamoDB item limit.

    `check_payload` catches the usual case early; this one also counts the
    keys, whose owner, context and task ids can be long.
    """
    size = item_size(item)
    if size > DYNAMODB_ITEM_LIMIT:
        raise PayloadTooLargeError(
            task_id, size, DYNAMODB_ITEM_LIMIT, f'{what} item (DynamoDB item limit)'
        )


def check_task_id(task_id: str) -> None:
    """Refuses a task id that cannot be a key.

    Raises:
        InvalidTaskIdError: If `task_id` is empty.
        PayloadTooLargeError: If `task_id` is too long for a key.
    """
    if not task_id:
        raise InvalidTaskIdError(task_id, 'a task id must not be empty')
    size = len(task_id.encode('utf-8'))
    if size > TASK_ID_LIMIT:
        raise PayloadTooLargeError(
            task_id[:64] + '...', size, TASK_ID_LIMIT, 'Task id (DynamoDB key limit)'
        )
