"""Correctness checks made while measuring; a violation fails the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from a2a.server.cluster import TaskVersion

    from benchmarks.workload import Stamp


class BenchmarkFailure(AssertionError):  # noqa: N818
    """A scenario saw lost, duplicated or reordered data: its numbers are void."""


@dataclass
class SequenceCheck:
    """What one subscription received of the events ``1..expected`` of a phase."""

    phase: str
    expected: int
    seen: set[int] = field(default_factory=set)
    duplicated: int = 0
    out_of_order: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    first_sent_ns: int | None = None
    last_recv_ns: int = 0
    _last_seq: int = 0
    _last_version: TaskVersion | None = None

    def record(self, version: TaskVersion, stamp: Stamp | None, recv_ns: int) -> None:
        """Checks and records one delivered event (others phases are ignored)."""
        if stamp is None or stamp.phase != self.phase:
            return
        if stamp.seq in self.seen:
            self.duplicated += 1
            return
        if stamp.seq < self._last_seq or (
            self._last_version is not None and not version.is_after(self._last_version)
        ):
            self.out_of_order += 1
        self.seen.add(stamp.seq)
        self._last_seq = max(self._last_seq, stamp.seq)
        self._last_version = version
        self.latencies_ns.append(recv_ns - stamp.sent_ns)
        if self.first_sent_ns is None or stamp.sent_ns < self.first_sent_ns:
            self.first_sent_ns = stamp.sent_ns
        self.last_recv_ns = max(self.last_recv_ns, recv_ns)

    @property
    def complete(self) -> bool:
        """Whether every expected event arrived."""
        return len(self.seen) >= self.expected

    @property
    def lost(self) -> int:
        """Expected events that never arrived."""
        return self.expected - len(self.seen & set(range(1, self.expected + 1)))


def totals(checks: list[SequenceCheck]) -> dict[str, int]:
    """Summed counts of every check."""
    return {
        'expected': sum(c.expected for c in checks),
        'delivered': sum(len(c.seen) for c in checks),
        'lost': sum(c.lost for c in checks),
        'duplicated': sum(c.duplicated for c in checks),
        'out_of_order': sum(c.out_of_order for c in checks),
    }


def require_clean(where: str, counts: dict[str, int]) -> None:
    """Raises `BenchmarkFailure` unless nothing was lost, duplicated or reordered.

    Args:
        where: The scenario, target and case, for the message.
        counts: As returned by `totals` (extra keys are ignored).
    """
    bad = {
        k: counts.get(k, 0)
        for k in ('lost', 'duplicated', 'out_of_order', 'lost_updates', 'errors')
        if counts.get(k, 0)
    }
    if bad:
        raise BenchmarkFailure(f'{where}: correctness check failed: {bad}')
