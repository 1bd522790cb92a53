"""Short scheduler time slices for the API workers, so a claim preempts the page rendering.

On two cores the master's API workers share the CPUs with the publisher (niced), the database
and anything else on the machine. Linux's EEVDF scheduler (6.6 and later) lets a running task
finish its time slice (1.4 ms here) before a newly woken one runs, whatever their nice values; a
claim arriving meanwhile waits. Since Linux 6.12 a task may ask for a shorter slice
(``sched_setattr``'s ``sched_runtime`` for SCHED_OTHER, no privilege needed): it then gets an
earlier deadline and preempts the running task when it wakes. Its CPU share is unchanged.

Python has no binding for sched_setattr; it is called by number on the architectures named in
``_SCHED_SETATTR``. On older kernels, other systems or other architectures nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

API_SLICE_NS = 100_000  # the shortest slice the kernel grants
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "armv7l": 380, "armv6l": 380}
_SCHED_OTHER = 0


class _SchedAttr(ctypes.Structure):
    """struct sched_attr, its first version (48 bytes), as sched_setattr(2) describes it."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def prefer_short_slices(slice_ns: int = API_SLICE_NS) -> bool:
    """Ask for ``slice_ns`` slices for this thread (call it before starting others, which
    inherit it); returns whether the kernel took it."""
    number = _SCHED_SETATTR.get(platform.machine())
    if number is None or not hasattr(os, "getpriority"):
        return False
    attr = _SchedAttr(
        size=ctypes.sizeof(_SchedAttr),
        sched_policy=_SCHED_OTHER,
        sched_nice=os.getpriority(os.PRIO_PROCESS, 0),
        sched_runtime=slice_ns,
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, 0, ctypes.byref(attr), 0) != 0:
        log.debug("short scheduler slices refused: %s", os.strerror(ctypes.get_errno()))
        return False
    return True
