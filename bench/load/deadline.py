"""Wake gevent's hub at absolute deadlines on ``time.perf_counter_ns``'s clock, to the microsecond.

gevent's own timers wake up to 1 ms late (libev rounds epoll timeouts up to whole
milliseconds). Here the hub waits on a Linux ``timerfd`` set to the absolute CLOCK_MONOTONIC
deadline (the clock ``perf_counter_ns`` reads), inside its own epoll: no second thread, no GIL
hand-over, and the process's timer slack cut to 1 ns. What remains is the CPU's wake-up from
idle, which the open-loop user covers by arming the timer a little before each intended time
(figures: docs/methodology.md).

Elsewhere (no timerfd, or a ``perf_counter`` that is not CLOCK_MONOTONIC) it falls back to
gevent's timer and says so in ``precise``.
"""
from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable

import gevent

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29
NS = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create  # noqa: B018 (present?)
        libc.timerfd_settime  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


class DeadlineTimer:
    """Calls ``callback()`` in the hub once per ``arm(deadline_ns)``, at (or just after) that
    ``perf_counter_ns`` time; a deadline already past fires at once. One pending deadline at a
    time: arming again replaces it."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._hub = gevent.get_hub()
        self._libc = _libc()
        self._fd = -1
        self._timer = None
        if self._libc is not None:
            fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                self._libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)  # this (the hub's) thread
                self._spec = _Itimerspec()
                self._watcher = self._hub.loop.io(fd, 1)  # 1: readable
                self._watcher.start(self._fired)

    @property
    def precise(self) -> bool:
        """True with a timerfd; False on the fallback (up to 1 ms late)."""
        return self._fd >= 0

    def arm(self, deadline_ns: int) -> None:
        if self._fd >= 0:
            value = self._spec.it_value
            value.tv_sec, value.tv_nsec = divmod(max(deadline_ns, 1), NS)
            if self._libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec),
                                          None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
            return
        if self._timer is not None:
            self._timer.stop()
        delay_s = max(0.0, (deadline_ns - time.perf_counter_ns()) / NS)
        self._timer = self._hub.loop.timer(delay_s)
        self._timer.start(self._callback)

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count; reading re-enables the fd
        except BlockingIOError:  # re-armed to a later time after it became readable
            return
        self._callback()

    def close(self) -> None:
        if self._fd >= 0:
            self._watcher.stop()
            self._watcher.close()
            os.close(self._fd)
            self._fd = -1
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
