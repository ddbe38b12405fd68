"""The cores to ourselves while timing steps (docs/method.md): real-time scheduling for every thread
of this process where the OS allows it, else a raised priority, restored afterwards."""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress


@contextmanager
def device_to_ourselves(step: int = 10):
    """Run every thread of this process ahead of other processes while measuring (docs/method.md:
    the table is measured with the cores to itself): real-time scheduling (SCHED_FIFO, which the
    kernel still caps at sched_rt_runtime_us of each second) where the OS allows it, else the
    priority raised by `step`, else unchanged. Both need root or CAP_SYS_NICE. Yields how the
    table was measured, for the record."""
    task = "/proc/self/task"  # Linux: scheduling is per thread, and torch's pool already exists
    threads = [int(t) for t in os.listdir(task)] if os.path.isdir(task) else [0]
    undo = _realtime(threads)
    status = "real-time scheduling"
    if undo is None:
        undo, status = _niced(threads, step)
    try:
        yield status
    finally:
        for restore in undo:
            with suppress(OSError):
                restore()


def _realtime(threads):
    """Switch `threads` to SCHED_FIFO; returns the calls that switch them back, or None."""
    if not hasattr(os, "sched_setscheduler"):
        return None
    undo = []
    fifo = os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO))
    for tid in threads:
        try:
            policy, param = os.sched_getscheduler(tid), os.sched_getparam(tid)
            os.sched_setscheduler(tid, os.SCHED_FIFO, fifo)
            undo.append(
                lambda tid=tid, policy=policy, param=param: os.sched_setscheduler(
                    tid, policy, param
                )
            )
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except OSError:
            for restore in undo:
                restore()
            return None
    return undo


def _niced(threads, step):
    undo, status = [], f"priority raised by {step}"
    for tid in threads:
        try:
            value = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, value - step)
            undo.append(lambda tid=tid, value=value: os.setpriority(os.PRIO_PROCESS, tid, value))
        except ProcessLookupError:
            continue
        except OSError as exc:
            status = (
                f"normal priority ({type(exc).__name__}: raising it needs root or "
                f"CAP_SYS_NICE); other processes may have disturbed it"
            )
            break
    return undo, status
