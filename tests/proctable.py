"""Every process a command started, read from the process table while it runs.

An orphan leaves the command's tree (its parent becomes init), so the tree is read every
50 ms from the start and each process is remembered by (pid, start time): afterwards
``survivors`` names those still running, and a pid the kernel has since given to another
process is not mistaken for one of ours.
"""
from __future__ import annotations

import threading
import time

import psutil


class ProcessWatch:
    """Reads the descendants of ``pid`` until ``stop``; ``seen`` maps (pid, start time) to
    the command line."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self.pid = pid
        self.every_s = every_s
        self.seen: dict[tuple[int, float], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "ProcessWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.read()
            time.sleep(self.every_s)

    def read(self) -> list[str]:
        """Remember the command's descendants now; their command lines."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        now = []
        for child in children:
            try:
                cmdline = " ".join(child.cmdline())
                self.seen[(child.pid, child.create_time())] = cmdline
                now.append(cmdline)
            except psutil.Error:
                pass
        return now

    def running(self, word: str) -> bool:
        """Whether a descendant whose command line has ``word`` runs now."""
        return any(word in cmdline for cmdline in self.read())

    def survivors(self) -> list[str]:
        """Command lines of the processes seen that still run (not zombies)."""
        out = []
        for (pid, started), cmdline in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{pid}: {cmdline}")
            except psutil.NoSuchProcess:
                pass
        return out
