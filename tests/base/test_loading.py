"""A one-time load runs on a worker thread with the garbage collector's automatic passes paused, and gives every
object back to the collector when it ends."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from nons.base import loading
from nons.base.loading import collector_paused, import_off_loop, load_off_loop


class Cyclic:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def collector_running() -> Iterator[None]:
    # A load an earlier test started and cancelled keeps running on its thread (a thread cannot be stopped), and
    # keeps its window open until it ends: wait for it.
    deadline = time.monotonic() + 60
    while not gc.isenabled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc.isenabled(), "the collector is still paused a minute after the tests before this one"
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    gc.enable()


def test_the_collector_makes_no_automatic_pass_while_a_load_runs() -> None:
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with collector_paused():
            assert not gc.isenabled()
            for _ in range(50_000):  # far more than the youngest generation's threshold of allocations
                Cyclic()
            assert passes == []
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(count)


def test_what_the_load_built_joins_the_oldest_generation_without_a_pass() -> None:
    with collector_paused():
        built = [Cyclic() for _ in range(1000)]
    assert gc.get_count()[0] < 1000, "the young generation was handed to the oldest, not left to be walked"
    assert gc.get_freeze_count() == 0, "nothing stays frozen"
    assert gc.is_tracked(built[0])


def test_garbage_from_before_and_during_the_load_is_collected_after_it() -> None:
    before = Cyclic()
    freed_before = weakref.ref(before)
    del before
    with collector_paused():
        during = Cyclic()
        freed_during = weakref.ref(during)
        del during
    gc.collect()
    assert freed_before() is None and freed_during() is None, "nothing stays out of the collector's reach"


def test_overlapping_loads_share_one_window() -> None:
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled(), "the second load still runs"
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_an_application_that_disabled_the_collector_itself_is_left_alone() -> None:
    gc.disable()
    try:
        with collector_paused():
            Cyclic()
        assert not gc.isenabled(), "NoN does not turn on a collector the application turned off"
    finally:
        gc.enable()


def test_an_application_that_freezes_objects_itself_is_left_alone() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with collector_paused():
        Cyclic()
    assert gc.get_freeze_count() == frozen, "NoN neither froze more nor unfroze the application's objects"
    assert gc.isenabled()


async def test_a_load_runs_on_a_worker_thread_inside_the_window() -> None:
    def load(label: str) -> tuple[str, bool, bool]:
        return label, threading.current_thread() is threading.main_thread(), gc.isenabled()

    label, on_main_thread, collecting = await load_off_loop(load, "sdk")
    assert (label, on_main_thread, collecting) == ("sdk", False, False)
    assert gc.isenabled()


async def test_a_failing_load_raises_its_error_and_closes_the_window() -> None:
    def load() -> None:
        raise ImportError("no module named 'vendor_sdk'")

    with pytest.raises(ImportError, match="vendor_sdk"):
        await load_off_loop(load)
    assert gc.isenabled()


async def test_concurrent_loads_each_finish_and_the_window_closes_after_the_last() -> None:
    both_running = threading.Barrier(2, timeout=10)

    def load(label: str) -> str:
        both_running.wait()  # the two loads overlap for certain
        return label

    assert await asyncio.gather(load_off_loop(load, "openai"), load_off_loop(load, "anthropic")) == [
        "openai",
        "anthropic",
    ]
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_during_a_load_starts_with_no_window_and_the_collector_on() -> None:
    with loading.collector_paused():
        pid = os.fork()
        if pid == 0:  # the child: the load (and its window) stayed in the parent
            os._exit(0 if gc.isenabled() and loading._loads == 0 and not loading._paused else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


async def test_a_module_is_imported_off_the_loop_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    assert await import_off_loop("json") is json, "an imported module is returned as it is"
    (tmp_path / "nons_loadable.py").write_text(
        "import threading\nIMPORTED_ON_MAIN_THREAD = threading.current_thread() is threading.main_thread()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nons_loadable", raising=False)
    module = await import_off_loop("nons_loadable")
    assert module.IMPORTED_ON_MAIN_THREAD is False
    assert await import_off_loop("nons_loadable") is module
    monkeypatch.delitem(sys.modules, "nons_loadable")
