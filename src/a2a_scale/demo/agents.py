"""The customer-service scenario: an intent agent routing to specialists.

The served A2A agent is the intent agent. It classifies the customer's
request with deterministic keyword rules and hands it to the booking or the
billing specialist, which streams its progress as status updates and ends
with an artifact. A request that matches neither asks the customer which one
they mean (input-required) and routes the answer.

Each progress message carries metadata: the ``agent`` speaking, the ``step``
number (1-based, contiguous over the whole task) and ``served_by``, the URL
of the replica running the agent, so a client watching from another replica
can tell where the work happens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
from dataclasses import dataclass

from a2a.helpers import new_task, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Specialist:
    """A specialist agent the intent agent can route to."""

    name: str
    keywords: tuple[str, ...]
    steps: tuple[str, ...]
    artifact_name: str
    result: str
    slow_step: int = 0
    """The step (1-based) that takes `SLOW_STEP_SECONDS`; 0 for none.

    The demo cancels the billing request while it is at this step, so the
    cancel reaches a running agent however slow the backend is.
    """


BOOKING = Specialist(
    name='booking',
    keywords=('book', 'flight', 'seat', 'reservation', 'trip', 'travel', 'hotel'),
    steps=(
        'Looking up reservation ABC123',
        'Searching flights for Friday',
        'Found 3 options; holding seat 14C on the 09:40',
        'Repricing the ticket: no fare difference',
        'Issuing the new ticket',
        'Emailing the itinerary',
    ),
    artifact_name='booking-confirmation',
    result='Booking ABC123 moved to Friday, 09:40, seat 14C. Ticket reissued.',
)
BILLING = Specialist(
    name='billing',
    keywords=('bill', 'charge', 'refund', 'invoice', 'payment', 'paid', 'card'),
    steps=(
        'Fetching invoices for the last 90 days',
        'Matching the card charge to invoice INV-0042',
        'Charge is a duplicate: flagging it',
        'Preparing a refund of 129.00 EUR',
        'Submitting the refund to the payment provider',
        'Sending the credit note',
    ),
    artifact_name='refund-receipt',
    result='Refund of 129.00 EUR issued for duplicate charge INV-0042.',
    slow_step=2,
)
SPECIALISTS = (BOOKING, BILLING)
SLOW_STEP_SECONDS = 10.0
CLARIFY = 'Is this about a booking or a bill?'
STOP_DIR_ENV = 'A2A_SCALE_DEMO_STOP_DIR'
"""Where agents in replica processes mark the tasks a cancel stopped."""


def route(text: str) -> Specialist | None:
    """Returns the specialist whose keywords occur most in `text`, if any."""
    words = text.lower()
    scores = [(sum(words.count(k) for k in s.keywords), s) for s in SPECIALISTS]
    best_score, best = max(scores, key=lambda pair: pair[0])
    return best if best_score > 0 else None


class CustomerServiceAgent(AgentExecutor):
    """The intent agent: routes to a specialist and streams its progress."""

    def __init__(self, url: str, *, step_delay: float = 0.25) -> None:
        """Creates the agent of the replica at `url`.

        Args:
            url: The replica's base URL, reported as ``served_by``.
            step_delay: Seconds each specialist step takes.
        """
        self.url = url
        self.step_delay = step_delay
        self._stopped: dict[str, asyncio.Event] = {}

    def stopped(self, task_id: str) -> asyncio.Event:
        """Set once a cancel has stopped this replica's run of `task_id`."""
        return self._stopped.setdefault(task_id, asyncio.Event())

    def _mark_stopped(self, task_id: str) -> None:
        """Sets `stopped` and, for a demo in other processes, leaves a marker.

        The marker is a file named after the task in ``A2A_SCALE_DEMO_STOP_DIR``
        holding this replica's URL.
        """
        self.stopped(task_id).set()
        directory = os.environ.get(STOP_DIR_ENV)
        if directory:
            (pathlib.Path(directory) / task_id).write_text(self.url)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Routes the request and streams the chosen specialist's work."""
        task_id, context_id = context.task_id or '', context.context_id or ''
        updater = TaskUpdater(event_queue, task_id, context_id)
        current = context.current_task
        if current is None and context.message is not None:
            await event_queue.enqueue_event(
                new_task(
                    task_id,
                    context_id,
                    TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message],
                )
            )
        step = 1 + _steps_so_far(current)
        try:
            specialist = route(context.get_user_input())
            if specialist is None:
                await self._say(updater, 'intent', step, CLARIFY, interrupt=True)
                return
            await self._say(
                updater, 'intent', step, f'Routing to the {specialist.name} agent'
            )
            for offset, text in enumerate(specialist.steps, start=1):
                slow = offset == specialist.slow_step
                await asyncio.sleep(SLOW_STEP_SECONDS if slow else self.step_delay)
                await self._say(updater, specialist.name, step + offset, text)
            await updater.add_artifact(
                [new_text_part(specialist.result)], name=specialist.artifact_name
            )
            await updater.complete()
        except asyncio.CancelledError:
            self._mark_stopped(task_id)
            logger.info('Task %s stopped by a cancel', task_id)
            raise

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Records a cancel that reached this replica and marks the task."""
        task_id = context.task_id or ''
        self._mark_stopped(task_id)
        await TaskUpdater(event_queue, task_id, context.context_id or '').cancel()

    async def _say(
        self,
        updater: TaskUpdater,
        agent: str,
        step: int,
        text: str,
        *,
        interrupt: bool = False,
    ) -> None:
        message = new_text_message(
            f'[{agent}] {text}',
            context_id=updater.context_id,
            task_id=updater.task_id,
        )
        message.metadata.update({'agent': agent, 'step': step, 'served_by': self.url})
        state = (
            TaskState.TASK_STATE_INPUT_REQUIRED
            if interrupt
            else TaskState.TASK_STATE_WORKING
        )
        await updater.update_status(state, message=message)


def _steps_so_far(task: object) -> int:
    """Counts the progress messages already recorded on `task`."""
    if task is None:
        return 0
    messages = [*task.history]  # type: ignore[attr-defined]
    if task.status.HasField('message'):  # type: ignore[attr-defined]
        messages.append(task.status.message)  # type: ignore[attr-defined]
    return sum(1 for m in messages if 'step' in m.metadata)


def step_of(message: Message) -> int | None:
    """Returns the ``step`` metadata of a progress message, if any."""
    if 'step' not in message.metadata:
        return None
    return int(message.metadata['step'])


def agent_card(url: str) -> AgentCard:
    """Returns the card of the customer-service agent served at `url`."""
    return AgentCard(
        name='Customer service',
        description='Routes customer requests to the booking or billing agent.',
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id=s.name,
                name=f'{s.name.title()} support',
                description=f'Handles {s.name} requests.',
                tags=[s.name],
                examples=[s.steps[0]],
            )
            for s in SPECIALISTS
        ],
    )


def create_agent(url: str) -> tuple[CustomerServiceAgent, AgentCard]:
    """The `AgentFactory` of the demo (used by subprocess replicas)."""
    return CustomerServiceAgent(url), agent_card(url)
