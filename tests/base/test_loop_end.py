"""``at_loop_end``: work done at an event loop's ``shutdown_asyncgens()``."""

from __future__ import annotations

import asyncio
import gc
import sys

from nons.base.loop_end import at_loop_end


def test_the_work_runs_at_the_loops_end_after_its_tasks_were_cancelled() -> None:
    done: list[str] = []

    async def finish() -> None:
        done.append("finished")

    async def main() -> None:
        main.watcher = at_loop_end(finish)  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))  # cancelled by asyncio.run first
        assert done == []

    asyncio.run(main())
    assert done == ["finished"]


def test_ends_that_run_together_leave_the_loops_generator_hooks_in_place() -> None:
    # Each end unset the thread's generator hooks and restored what it saw: two at once restored each other's
    # None, and generators started later in the loop were never finalised.
    async def finish() -> None:
        await asyncio.sleep(0.01)

    async def main() -> object:
        watchers = [at_loop_end(finish), at_loop_end(finish)]
        del watchers  # dropped while the loop runs: both end now, together
        gc.collect()
        await asyncio.sleep(0.05)
        return sys.get_asyncgen_hooks().firstiter

    assert asyncio.run(main()) is not None
