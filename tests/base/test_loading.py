"""A one-time load runs on a worker thread, with the garbage collector's passes skipping the objects that existed
before it, and gives every object back to the collector when it ends."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from nons.base import loading
from nons.base.loading import load_off_loop, young_objects_only


class Cyclic:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen_heap() -> Iterator[None]:
    # A load an earlier test started and cancelled keeps running on its thread (a thread cannot be stopped), and
    # keeps its window open until it ends: wait for it.
    deadline = time.monotonic() + 60
    while gc.get_freeze_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc.get_freeze_count() == 0, "objects are still frozen a minute after the tests before this one"
    yield
    gc.unfreeze()


def test_objects_from_before_the_load_are_frozen_only_while_it_runs() -> None:
    with young_objects_only():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_garbage_of_the_application_is_collected_after_the_load_ends() -> None:
    garbage = Cyclic()
    freed = weakref.ref(garbage)
    with young_objects_only():
        del garbage
        gc.collect()
        assert freed() is not None, "a pass during the load walks only the objects the load built"
    gc.collect()
    assert freed() is None, "nothing stays out of the collector's reach once the load ended"


def test_what_the_load_builds_is_collected_as_usual() -> None:
    with young_objects_only():
        built = Cyclic()
        freed = weakref.ref(built)
        del built
        gc.collect()
        assert freed() is None


def test_overlapping_loads_share_one_window() -> None:
    first, second = young_objects_only(), young_objects_only()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_freeze_count() > 0, "the second load still runs"
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0


def test_an_application_that_freezes_objects_itself_is_left_alone() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with young_objects_only():
        Cyclic()
    assert gc.get_freeze_count() == frozen, "NoN neither froze more nor unfroze the application's objects"


async def test_a_load_runs_on_a_worker_thread_inside_the_window() -> None:
    def load(label: str) -> tuple[str, bool, int]:
        return label, threading.current_thread() is threading.main_thread(), gc.get_freeze_count()

    label, on_main_thread, frozen = await load_off_loop(load, "sdk")
    assert (label, on_main_thread) == ("sdk", False)
    assert frozen > 0
    assert gc.get_freeze_count() == 0


async def test_a_failing_load_raises_its_error_and_closes_the_window() -> None:
    def load() -> None:
        raise ImportError("no module named 'vendor_sdk'")

    with pytest.raises(ImportError, match="vendor_sdk"):
        await load_off_loop(load)
    assert gc.get_freeze_count() == 0


async def test_concurrent_loads_each_finish_and_the_window_closes_after_the_last() -> None:
    both_running = threading.Barrier(2, timeout=10)

    def load(label: str) -> str:
        both_running.wait()  # the two loads overlap for certain
        return label

    assert await asyncio.gather(load_off_loop(load, "openai"), load_off_loop(load, "anthropic")) == [
        "openai",
        "anthropic",
    ]
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_during_a_load_starts_with_no_window_and_nothing_frozen() -> None:
    with loading.young_objects_only():
        pid = os.fork()
        if pid == 0:  # the child: the load (and its window) stayed in the parent
            os._exit(0 if gc.get_freeze_count() == 0 and loading._loads == 0 and not loading._froze else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
