"""Processes forked after configure(): fresh locks in the child, and a last flush for
``multiprocessing`` children, which leave through ``os._exit`` (so ``atexit`` never runs there).

Every object of the OTLP path that owns a lock (the spill file, the circuit, the span processor's
queue and its condition, the metric exporter) renews it in the child with ``renew_in_child``: a
lock held by another thread at the moment of ``fork()`` stays held forever in the child, whose
copy of that thread does not exist.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Finalizers with a priority >= 0 run first in multiprocessing's exit function, before it joins
# the child's own children; the queues' feeder threads close at 10 and join at -5.
_CHILD_EXIT_PRIORITY = 0


def renew_in_child(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in the child after every ``fork()``, for as long as its object
    lives (held weakly: a configuration replaced since costs nothing)."""
    if not hasattr(os, "register_at_fork"):
        return
    reference = weakref.WeakMethod(method)

    def after_in_child() -> None:
        bound = reference()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)


def finish_in_multiprocessing_children(owner: T, finish: Callable[[T], None]) -> None:
    """Run ``finish(owner)`` when a ``multiprocessing`` child forked from this process exits.

    A child started with the fork method runs ``Process.run()`` and then leaves through
    ``os._exit()``: ``atexit`` handlers (steptrace's flush among them) never run, and whatever
    is still queued for OTLP would vanish. Just before ``os._exit``, ``_bootstrap`` runs
    ``multiprocessing.util._exit_function()``, which calls the finalizers registered with
    ``util.Finalize`` in that process. Finalizers inherited from the parent are cleared first
    (``_finalizer_registry.clear()`` in ``Process._after_fork``), and only then are the after-fork
    hooks of ``util.register_after_fork`` called: so the hook registered here, inherited by every
    fork child, registers the finalizer in the child itself. No user code is involved, and a plain
    ``os.fork()`` child (which calls no multiprocessing code) is unaffected.
    """
    import multiprocessing.util as mp_util  # imported here: most programs never need it

    def in_child(target: T) -> None:
        mp_util.Finalize(target, finish, args=(target,), exitpriority=_CHILD_EXIT_PRIORITY)

    mp_util.register_after_fork(owner, in_child)
