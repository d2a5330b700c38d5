"""The task registry of a cluster handler: it reports turns and releases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from a2a_scale.sdk_compat import ActiveTask, ActiveTaskRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from a2a.server.context import ServerCallContext
    from a2a.types.a2a_pb2 import Message

    from a2a_scale.handler.running import RunningTurns


class ClusterTaskRegistry(ActiveTaskRegistry):
    """An `ActiveTaskRegistry` that reports turns set up and tasks released."""

    def __init__(
        self,
        *,
        on_turn: Callable[[ActiveTask, ServerCallContext], None],
        on_release: Callable[[ActiveTask], None],
        turns: RunningTurns | None = None,
        **kwargs: Any,
    ) -> None:
        if turns is not None:
            # The tasks save through it, so it sees where each turn ends.
            kwargs['task_store'] = turns.wrap(kwargs['task_store'])
        super().__init__(**kwargs)
        self._on_turn = on_turn
        self._on_release = on_release
        self._turns = turns

    async def get_or_create(
        self,
        task_id: str,
        call_context: ServerCallContext,
        context_id: str | None = None,
        create_task_if_missing: bool = False,
        initial_message: Message | None = None,
    ) -> ActiveTask:
        """The SDK's lookup; a new message (the only creating caller) starts a turn."""
        active_task = await super().get_or_create(
            task_id,
            call_context=call_context,
            context_id=context_id,
            create_task_if_missing=create_task_if_missing,
            initial_message=initial_message,
        )
        if create_task_if_missing:
            self._on_turn(active_task, call_context)
            if self._turns is not None:
                # Recorded before the request reaches the agent.
                await self._turns.started(active_task, call_context)
        return active_task

    def _on_active_task_cleanup(self, active_task: ActiveTask) -> None:
        super()._on_active_task_cleanup(active_task)
        self._on_release(active_task)
        if self._turns is not None:
            self._turns.released(active_task)
