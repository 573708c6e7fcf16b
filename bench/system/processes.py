"""The harness's process library: start a command in its own process group, stop groups,
hold signals while cleaning up. Shared by the launcher, the load generator and the floors.

Every child is the leader of a new session (so one ``killpg`` reaches everything it forks),
writes to its own log file, gets SIGTERM if the harness dies without cleaning up (Linux's
parent-death signal), and may be pinned to a CPU set its children inherit.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def _die_with_parent(libc: ctypes.CDLL | None, sig: signal.Signals) -> None:
    """In the child: get ``sig`` if the harness dies without cleaning up (Linux only).
    libc is loaded by the parent: loading a library after fork, with other threads running
    in the parent, can deadlock the child."""
    if libc is not None:
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG


def child_env(root: str | None = None, **extra: str) -> dict[str, str]:
    """Our environment for a child that imports this checkout's packages (the repository root
    first on PYTHONPATH, unbuffered output), plus ``extra``. ``root``: another checkout's
    packages instead (a git worktree of another ref)."""
    root = root or str(Path(__file__).resolve().parents[2])  # bench/system/ is two down
    pythonpath = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", **extra}


def spawn_group(cmd: list[str], log_path: Path, env: dict[str, str],
                cpus: tuple[int, ...] | None = None, pass_fds: tuple[int, ...] = (),
                append: bool = False, niceness: int = 0, cwd: str | None = None,
                death_signal: signal.Signals = signal.SIGTERM) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group (so ``stop_groups`` reaches all it
    forks), output to ``log_path`` (added to, with ``append``), dying with us, and pinned to
    ``cpus`` if given (children inherit the affinity). A negative ``niceness`` raises its
    scheduling weight where we may (root, or CAP_SYS_NICE); elsewhere it runs at ours.
    ``cwd``: its working directory (default ours). ``death_signal``: what it gets if we die
    first (SIGKILL for a child that may be too busy to handle SIGTERM, and holds nothing
    worth a clean exit once we are gone)."""
    libc = _libc()

    def in_child() -> None:
        _die_with_parent(libc, death_signal)
        if cpus:
            os.sched_setaffinity(0, cpus)
        if niceness:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, niceness)
            except PermissionError:
                pass

    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, pass_fds=pass_fds,
                                preexec_fn=in_child, cwd=cwd)


def stop_groups(popens: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGTERM each process group, wait up to ``timeout_s``, then SIGKILL what is left."""
    for popen in popens:
        _signal_group(popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for popen in popens:
        try:
            popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for popen in popens:
        _signal_group(popen.pid, signal.SIGKILL)  # what a dead leader left behind, if any
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Set by a stop signal's handler (``bench.cli``). The handler also raises KeyboardInterrupt,
# but Python swallows an exception raised while a finalizer (a __del__) happens to be running
# ("Exception ignored in ..."), so long loops check this too: a stop is never lost.
stop_requested = threading.Event()


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them (unless the
    block is already ending in an exception, whose exit status then stands).

    Handlers are swapped rather than the signal mask changed: Python runs handlers in the
    main thread whichever thread the kernel picked, so a mask on one thread holds nothing.
    Outside the main thread (where handlers cannot be set) this holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in held}
    leaving_on_error = False
    try:
        yield
    except BaseException:
        leaving_on_error = True  # already on the way out: that exit status stands
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not leaving_on_error:
            # raise_signal, not os.kill(getpid()): a process-directed signal may land on
            # another thread and reach the main thread's handler only later, after the
            # caller has moved on; raise_signal runs the handler before it returns.
            for sig in dict.fromkeys(caught):
                signal.raise_signal(sig)


@contextmanager
def pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Run the calling process on ``cpus`` for the block, then restore its CPU set."""
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
