"""What the demo reports: its narrator interface, its result and its failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from a2a_scale.errors import A2AScaleError


class DemoFailure(Exception):  # noqa: N818
    """A step of the demo did not behave as it must; the message says how."""


class DemoSetupError(A2AScaleError):
    """The demo could not start its replicas; the message says why."""


class Narrator(Protocol):
    """Receives the story as it happens."""

    def chapter(self, title: str) -> None:
        """Starts a new part of the story."""

    def event(self, source: str, via: int, ran_on: int, text: str) -> None:
        """An event a client on replica `via` saw; the agent ran on `ran_on`.

        `source` is ``live`` (streamed as it happened), ``replay`` (served
        from the snapshot, already seen before a disconnect) or ``missed``
        (served from the snapshot, happened while disconnected).
        """

    def note(self, text: str) -> None:
        """A plain line of the story."""

    def check(self, text: str) -> None:
        """A check that passed."""

    def waiting(self, text: str) -> None:
        """Something slow is under way."""

    def finals(self, rows: list[tuple[str, str, str, int]]) -> None:
        """Final states: (replica, request 1, request 2, tasks listed)."""

    def cleanup(self, text: str) -> None:
        """What the demo deleted at the end, or where it kept its data."""


@dataclass
class DemoResult:
    """What the demo observed."""

    backend: str
    mode: str
    replicas: list[str]
    namespace: str = ''
    booking_task: str = ''
    billing_task: str = ''
    replayed_steps: list[int] = field(default_factory=list)
    live_steps: list[int] = field(default_factory=list)
