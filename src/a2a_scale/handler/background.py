"""Background tasks a handler starts and must see finished before it closes."""

from __future__ import annotations

import asyncio
from typing import Any


async def finish_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Waits for every task in `tasks` that can still finish, then empties it.

    Tasks remove themselves from the set in a done callback, which runs only
    if their event loop runs once more after they finish. A task of another
    event loop (a test framework may stop one loop and tear down in the
    next) can neither be awaited nor finish here, so it is dropped rather
    than waited for forever; so is a finished one whose callback never ran.
    """
    loop = asyncio.get_running_loop()
    while tasks:
        waiting = [t for t in tasks if not t.done() and t.get_loop() is loop]
        tasks.difference_update(
            [t for t in tasks if t.done() or t.get_loop() is not loop]
        )
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
