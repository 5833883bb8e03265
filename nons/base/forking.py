"""Objects that must be renewed in a forked child: a thread, a lock or a native worker that a fork does not copy.

:func:`in_forked_child` is the one way NoN registers such a renewal. It holds the object by a weak reference,
because a registration with ``os.register_at_fork`` cannot be undone and must not keep a discarded object alive;
and it does nothing where the platform cannot fork (Windows has no ``os.register_at_fork``).
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable

__all__ = ["in_forked_child"]


def in_forked_child(method: Callable[[], object]) -> None:
    """Call the bound ``method`` in the child of every later fork, for as long as its object lives."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=functools.partial(_call_if_alive, weakref.WeakMethod(method)))


def _call_if_alive(method: weakref.WeakMethod[Callable[[], object]]) -> None:
    alive = method()
    if alive is not None:
        alive()
