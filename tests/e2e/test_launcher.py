"""`seambench up` leaves nothing behind, and says which process failed to start."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import psutil
import pytest

from bench.system import launcher
from bench.system.edge import find_nginx
from bench.system.launcher import LaunchError, launch
from shop.address import address_of
from shop.placement import load_topology
from tests.placements import TEST_SETTINGS

SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of ``pids``."""
    found = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("topology,sig", [("microservices", signal.SIGINT),
                                          ("monolith", signal.SIGTERM),
                                          ("hybrid", signal.SIGINT)])
def test_interrupted_up_leaves_no_process_and_no_port(topology, sig):
    up = subprocess.Popen([*SEAMBENCH, "up", "--topology", topology, "--kdf-log2", "4",
                           "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True)
    try:
        base_url = up.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), up.stderr.read()
        children = {p.pid for p in psutil.Process(up.pid).children(recursive=True)}
        expected = 1 + 4 if topology == "microservices" else (1 if topology == "monolith" else 4)
        edge = 1 if find_nginx() else 0  # nginx in front of the public process (auto)
        masters = [p for p in psutil.Process(up.pid).children()]
        assert len(masters) == expected + edge
        assert len(children) == expected * 3 + edge  # each gunicorn master has two workers
        sockets = listening(children)
        ports = {port for _, port in sockets}
        assert address_of(base_url)[1] in ports and len(ports) == expected + edge
        assert {addr for addr, _ in sockets} == {"127.0.0.1"}
        up.send_signal(sig)
        assert up.wait(30) == 130  # interrupted: bench/exitcodes.py
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in children if alive(pid)]
        assert all(port_is_free(port) for port in ports)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def test_a_process_that_dies_at_start_is_named_with_its_log(monkeypatch):
    """Give the billing process an app gunicorn cannot load: it exits while starting."""
    real_app_spec = launcher.app_spec

    def app_spec(topology, process):
        return "microservices.service:no_such_factory()" if process == "billing" \
            else real_app_spec(topology, process)

    monkeypatch.setattr(launcher, "app_spec", app_spec)
    started = []
    monkeypatch.setattr(launcher, "start_process", _recording(launcher.start_process, started))
    with pytest.raises(LaunchError) as err:
        with launch(load_topology("microservices"), replace(TEST_SETTINGS, ready_timeout_s=30)):
            pass
    message = str(err.value)
    assert "'billing'" in message and "exited with code" in message
    assert "no_such_factory" in message  # the tail of gunicorn's log says why
    assert len(started) == 5 and not [p for p in started if alive(p.pid)]
    for proc in started:
        assert port_is_free(address_of(proc.url)[1])


def _recording(start_process, started):
    def wrapper(*args, **kwargs):
        proc = start_process(*args, **kwargs)
        started.append(proc)
        return proc
    return wrapper


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[process.a]\ncomponents = ['auth', 'cart']\n")
    for args in (["up", "--topology", "nope"], ["up", "--workers", "0"], ["frobnicate"],
                 ["up", "--topology", str(bad_toml)]):
        done = subprocess.run([*SEAMBENCH, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("seambench: error: ")


def test_a_killed_launcher_takes_its_processes_with_it(tmp_path):
    """SIGKILL gives the launcher no chance to clean up: the children's parent-death
    signal must stop them anyway. (Its data directory is left; here pytest's tmp_path.)"""
    up = subprocess.Popen([*SEAMBENCH, "up", "--topology", "hybrid", "--kdf-log2", "4",
                           "--data-dir", str(tmp_path / "data")],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          start_new_session=True)
    try:
        assert up.stdout.readline().startswith("http://127.0.0.1:")
        children = {p.pid for p in psutil.Process(up.pid).children(recursive=True)}
        sockets = listening(children)
        up.kill()
        up.wait(10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if alive(pid)]
        assert all(port_is_free(port) for _, port in sockets)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
