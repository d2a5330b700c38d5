"""Doorbells and the per-task feed `SnsSqsEventStream` shares among subscribers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from a2a_scale_aws import items


def doorbell(task_id: str, version: int) -> str:
    """The body of a doorbell: the task and version only, never the event."""
    return json.dumps({'t': task_id, 'v': version}, separators=(',', ':'))


def parse_doorbell(body: str) -> tuple[str, int] | None:
    """Reads a doorbell body; `None` if it is not one."""
    try:
        data = json.loads(body)
        task_id, version = data['t'], data['v']
    except (ValueError, TypeError, KeyError):
        return None
    if (
        not isinstance(task_id, str)
        or not isinstance(version, int)
        or isinstance(version, bool)
    ):
        return None
    return task_id, version


def digest(data: bytes) -> bytes:
    """A short hash of an event's bytes, to compare payloads cheaply."""
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class Feed:
    """The log of one task as read by this replica, shared by its subscribers.

    ``keys``/``bodies`` hold every logged event whose sort key is in
    ``(floor, head]``; cursors are event sort keys too.
    """

    task_id: str
    floor: str | None = None
    head: str = items.EVENT_PREFIX
    keys: list[str] = field(default_factory=list)
    bodies: list[tuple[bytes, bool]] = field(default_factory=list)
    cursors: dict[int, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: asyncio.Task[None] | None = None
    dirty: bool = False
    last_item: str | None = None
    """The sort key of the newest event item read, to notice a deleted log."""
    last_body: tuple[bytes, bool] | None = None
    """The body of that item."""
    generation: int = 0
    """Bumped when the log was deleted (and the id reused) under the feed."""

    def pulse(self) -> None:
        """Wakes every subscriber waiting on the feed."""
        old, self.changed = self.changed, asyncio.Event()
        old.set()
