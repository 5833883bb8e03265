"""A one-time load runs on a worker thread while the garbage collector makes young-generation passes only, and
gives every object back to the collector when it ends; a module is imported off the loop once, and whoever asks
while it is being imported gets it whole."""

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
from nons.base.loading import collector_paused, import_off_loop, imported, load_off_loop


class Cyclic:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


class GcPasses:
    """The generations of the collector's passes while it is installed."""

    def __init__(self) -> None:
        self.generations: list[int] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.generations.append(info["generation"])


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


@pytest.fixture
def passes() -> Iterator[GcPasses]:
    recorder = GcPasses()
    gc.callbacks.append(recorder)
    yield recorder
    gc.callbacks.remove(recorder)


def test_only_young_passes_run_while_a_load_runs(passes: GcPasses) -> None:
    with collector_paused():
        assert not gc.isenabled()
        for _ in range(20):
            for _ in range(5_000):  # far more than the youngest generation's threshold of allocations
                Cyclic()
            time.sleep(loading.SWEEP_INTERVAL_S)
    assert gc.isenabled()
    assert passes.generations, "the sweeper made young passes"
    assert set(passes.generations) == {0}, "no pass over the older generations"


def test_garbage_dropped_during_a_load_is_collected_during_it() -> None:
    with collector_paused():
        dropped = Cyclic()
        freed = weakref.ref(dropped)
        del dropped
        deadline = time.monotonic() + 10
        while freed() is not None and time.monotonic() < deadline:
            time.sleep(loading.SWEEP_INTERVAL_S)
        assert freed() is None, "a young pass of the sweeper collected it, no explicit gc.collect()"


def test_what_the_load_built_joins_the_oldest_generation_without_a_pass(passes: GcPasses) -> None:
    with collector_paused():
        built = [Cyclic() for _ in range(1000)]
        passes.generations.clear()
    assert passes.generations == [], "the window ended without a pass"
    young = {id(o) for generation in (0, 1) for o in gc.get_objects(generation=generation)}
    assert not young & {id(o) for o in built}, "every object the load built is in the oldest generation"
    assert gc.get_freeze_count() == 0, "nothing stays frozen"


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


def test_a_load_that_hangs_gives_the_collector_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "MAX_PAUSE_S", 0.1)
    with collector_paused():
        deadline = time.monotonic() + 10
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.isenabled(), "the automatic passes resumed while the load still runs"
        with collector_paused():
            assert not gc.isenabled(), "a later load, started while the hung one runs, pauses the collector again"
        assert gc.isenabled()
    assert gc.isenabled()


def test_a_sweeper_that_cannot_start_leaves_the_collector_running(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="start new thread"), collector_paused():
        pass
    assert gc.isenabled()
    monkeypatch.undo()
    with collector_paused():
        assert not gc.isenabled(), "the next load opens its window as usual"


def test_an_application_that_disabled_the_collector_itself_is_left_alone() -> None:
    gc.disable()
    try:
        with collector_paused():
            Cyclic()
        assert not gc.isenabled(), "NoN does not turn on a collector the application turned off"
    finally:
        gc.enable()


def test_an_application_that_freezes_objects_itself_is_left_alone() -> None:
    kept = Cyclic()
    gc.freeze()
    with collector_paused():
        Cyclic()
    tracked = {id(o) for o in gc.get_objects()}  # every generation but the permanent one
    assert id(kept) not in tracked, "the application's frozen objects stay frozen"
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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_on_the_loading_thread_can_pause_the_collector_again() -> None:
    window = loading.collector_paused()
    window.__enter__()
    pid = os.fork()
    window.__exit__(None, None, None)  # in the child: the end of a window it no longer counts
    if pid == 0:
        healthy = loading._loads == 0 and gc.isenabled()
        with loading.collector_paused():
            healthy = healthy and not gc.isenabled()
        os._exit(0 if healthy and gc.isenabled() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _module_file(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(body)


async def test_a_module_is_imported_off_the_loop_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    assert await import_off_loop("json") is json, "an imported module is returned as it is"
    body = "import threading\nON_MAIN = threading.current_thread() is threading.main_thread()\n"
    _module_file(tmp_path, "nons_loadable", body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nons_loadable", raising=False)
    module = await import_off_loop("nons_loadable")
    assert module.ON_MAIN is False
    assert await import_off_loop("nons_loadable") is module
    monkeypatch.delitem(sys.modules, "nons_loadable")


async def test_callers_that_arrive_during_the_import_get_the_whole_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module's body takes a while, and is in sys.modules from its first line on.
    _module_file(tmp_path, "nons_slow_loadable", "import time\ntime.sleep(0.3)\nREADY = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nons_slow_loadable", raising=False)
    first = asyncio.ensure_future(import_off_loop("nons_slow_loadable"))
    deadline = time.monotonic() + 10
    # Polled: the import system signals nothing when a module's import starts.
    while "nons_slow_loadable" not in sys.modules and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    assert imported("nons_slow_loadable") is None, "half a module is not an imported one"
    modules = await asyncio.gather(first, *(import_off_loop("nons_slow_loadable") for _ in range(5)))
    assert all(module.READY for module in modules)
    assert imported("nons_slow_loadable") is modules[0]
    monkeypatch.delitem(sys.modules, "nons_slow_loadable")
