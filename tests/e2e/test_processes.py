"""bench/system/processes.py: a spawned group is stopped whole, logs to its file, can be pinned,
and signals wait for clean-up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.system.processes import child_env, signals_held, spawn_group, stop_groups


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_stop_groups_reaches_what_the_leader_forked(tmp_path):
    # The leader forks a grandchild and ignores SIGTERM: SIGKILL to the group must get both.
    script = ("import os, signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print('child', child.pid, flush=True)\n"
              "time.sleep(60)\n")
    log = tmp_path / "leader.log"
    popen = spawn_group([sys.executable, "-c", script], log, child_env(), cpus=(0,))
    deadline = time.monotonic() + 10
    while "child" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    grandchild = int(log.read_text().split()[1])
    assert os.getpgid(grandchild) == popen.pid  # the leader's own group, not ours
    assert os.getpgid(popen.pid) != os.getpgid(0)
    assert psutil.Process(grandchild).cpu_affinity() == [0]  # pinning is inherited
    started = time.monotonic()
    stop_groups([popen], timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert popen.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(grandchild)


def test_child_env_puts_this_checkout_first_on_the_path():
    env = child_env(EXTRA="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == os.path.dirname(root)
    assert env["EXTRA"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_a_signal_during_clean_up_waits_until_it_is_done():
    # Python's own SIGINT handler, whatever this process inherited: a shell starting the
    # suite in the background (`... &`) hands it SIGINT ignored.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
                finished.append("clean-up")
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert finished == ["clean-up"]


def test_a_group_may_be_given_more_scheduling_weight_where_permitted(tmp_path):
    popen = spawn_group([sys.executable, "-c", "import time; time.sleep(30)"],
                        tmp_path / "nice.log", child_env(), niceness=-5)
    try:
        expected = -5 if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, popen.pid) == expected
    finally:
        stop_groups([popen], timeout_s=0.5)


def test_a_child_too_busy_for_sigterm_still_dies_with_its_parent(tmp_path):
    """A generator spins without running its SIGTERM handler (Locust under gevent, busy): its
    parent-death signal is SIGKILL, so a harness killed outright leaves no orphan."""
    busy = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: pass\n"
    parent = ("import signal, sys, time\n"
              "from pathlib import Path\n"
              "from bench.system.processes import child_env, spawn_group\n"
              f"p = spawn_group([sys.executable, '-c', {busy!r}], Path({str(tmp_path / 'busy.log')!r}), "
              "child_env(), death_signal=signal.SIGKILL)\n"
              "print(p.pid, flush=True)\n"
              "time.sleep(60)\n")
    harness = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
                               env=child_env())
    try:
        child = int(harness.stdout.readline())
        assert _alive(child)
        harness.kill()
        harness.wait(5)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if harness.poll() is None:
            harness.kill()
