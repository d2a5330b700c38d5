"""`RunningTurns`: the records of stopped turns are dropped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from a2a.server.context import ServerCallContext

from a2a_scale.handler import running
from a2a_scale.handler.running import RunningTurns
from a2a_scale.recovery import RunningTask, RunningTasks

pytestmark = [pytest.mark.memory, pytest.mark.asyncio]

ME = 'replica-a'


@dataclass
class Turn:
    """Stands in for the SDK's `ActiveTask`: only its task id is read."""

    task_id: str


class Records(RunningTasks):
    """Records kept in a dict, and every call made to them."""

    def __init__(self) -> None:
        self.held: dict[str, RunningTask] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail = False

    async def add(self, record: RunningTask) -> None:
        self.calls.append(('add', record.task_id))
        self.held[record.task_id] = record

    async def remove(self, task_id: str, instance_id: str) -> None:
        self.calls.append(('remove', task_id))
        await self.remove_many([(task_id, instance_id)])

    async def remove_many(self, records: Sequence[tuple[str, str]]) -> None:
        self.calls.append(('remove_many', *sorted(t for t, _ in records)))
        if self.fail:
            raise ConnectionError('injected')
        for task_id, instance_id in records:
            if task_id in self.held and self.held[task_id].instance_id == instance_id:
                del self.held[task_id]

    async def running(self, instance_id: str | None = None) -> list[RunningTask]:
        return list(self.held.values())

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        return []


def _turns(records: Records) -> RunningTurns:
    return RunningTurns(records, instance_id=ME, owner_resolver=lambda _: 'alice')


async def _start(turns: RunningTurns, task_id: str) -> None:
    await turns.started(Turn(task_id), ServerCallContext())  # type: ignore[arg-type]


async def test_turns_that_stop_together_drop_their_records_in_one_call() -> None:
    records = Records()
    turns = _turns(records)
    for task_id in ('t1', 't2', 't3'):
        await _start(turns, task_id)
    for task_id in ('t1', 't2', 't3'):
        turns.stop(task_id)
    assert set(records.held) == {'t1', 't2', 't3'}  # not yet: they wait
    await asyncio.sleep(running.REMOVAL_DELAY_SECONDS * 3)
    assert records.held == {}
    assert [c for c in records.calls if c[0] != 'add'] == [
        ('remove_many', 't1', 't2', 't3')
    ]
    await turns.aclose()


async def test_a_turn_started_again_keeps_its_new_record() -> None:
    records = Records()
    turns = _turns(records)
    await _start(turns, 't1')
    turns.stop('t1')
    await _start(turns, 't1')  # a follow-up, before the removal went out
    await asyncio.sleep(running.REMOVAL_DELAY_SECONDS * 3)
    assert set(records.held) == {'t1'}
    assert turns.task_ids() == ['t1']
    turns.stop('t1')
    await turns.aclose()
    assert records.held == {}


async def test_close_sends_the_removals_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(running, 'REMOVAL_DELAY_SECONDS', 3600.0)
    records = Records()
    turns = _turns(records)
    for task_id in ('t1', 't2'):
        await _start(turns, task_id)
        turns.stop(task_id)
    await asyncio.wait_for(turns.aclose(), 5)
    assert records.held == {}


async def test_a_failed_removal_is_logged_and_the_next_ones_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = Records()
    turns = _turns(records)
    await _start(turns, 't1')
    records.fail = True
    with caplog.at_level(logging.ERROR):
        turns.stop('t1')
        await asyncio.sleep(running.REMOVAL_DELAY_SECONDS * 3)
    assert 'Dropping the running records of 1 task(s) failed' in caplog.text
    records.fail = False
    await _start(turns, 't2')
    turns.stop('t2')
    await turns.aclose()
    assert set(records.held) == {'t1'}  # left behind: recovery finds it done


async def test_the_default_remove_many_tries_every_record() -> None:
    class OneByOne(Records):
        async def remove_many(self, records: Sequence[tuple[str, str]]) -> None:
            await RunningTasks.remove_many(self, records)

        async def remove(self, task_id: str, instance_id: str) -> None:
            self.calls.append(('remove', task_id))
            if task_id == 't1':
                raise ConnectionError('injected')
            self.held.pop(task_id, None)

    records: Any = OneByOne()
    for task_id in ('t1', 't2'):
        await records.add(RunningTask(task_id, 'alice', ME))
    with pytest.raises(ConnectionError):
        await records.remove_many([('t1', ME), ('t2', ME)])
    assert set(records.held) == {'t1'}
