"""``in_forked_child``: what a forked child must renew is renewed there, and only while its object lives."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from nons.base.forking import in_forked_child

CHILD = """
import os, sys
from nons.base.forking import in_forked_child

class Worker:
    renewed = 0
    def renew(self):
        Worker.renewed += 1

kept, dropped = Worker(), Worker()
in_forked_child(kept.renew)
in_forked_child(dropped.renew)
del dropped
child = os.fork()
if child == 0:
    os._exit(Worker.renewed)  # the child's count: only the living object's method ran
_, status = os.waitpid(child, 0)
print(os.waitstatus_to_exitcode(status), Worker.renewed)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="this platform cannot fork")
def test_the_method_runs_in_the_child_only_while_its_object_lives() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, check=True)
    in_child, in_parent = done.stdout.split()
    assert (in_child, in_parent) == ("1", "0")


def test_registering_does_not_keep_the_object_alive() -> None:
    class Worker:
        def renew(self) -> None:
            pass

    worker = Worker()
    in_forked_child(worker.renew)
    alive = weakref.ref(worker)
    del worker
    gc.collect()
    assert alive() is None
