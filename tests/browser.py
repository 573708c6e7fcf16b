"""Headless Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ended by NUL on fds 3 and 4), enough to open a page and ask it questions, with
nothing to install besides the browser (Debian's ``chromium``)."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers import _missing


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


def require_chromium() -> str:
    """The browser's path; skips (fails under CI=true) when there is none."""
    found = find_chromium()
    if found is None:
        _missing("no chromium on PATH (Debian: apt-get install chromium)")
    return found


class Page:
    """One tab: ``send`` a command and get its result; events seen so far in ``events``."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self._proc, self._out, self._in = proc, to_browser, from_browser
        self._next, self._buffer, self.events = 0, b"", []
        self._session: str | None = None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target,
                                  flatten=True)["sessionId"]

    def send(self, method: str, timeout_s: float = 30, **params: Any) -> dict[str, Any]:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = next((e for e in self.events if e["method"] == event), None)
            if found is not None:
                return found
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)


def above_4(fd: int) -> int:
    """``fd`` moved to a number over 10: 3 and 4 are where the browser will want its ends."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@contextmanager
def headless_page(chromium: str, profile_dir: str) -> Iterator[Page]:
    """A headless browser with one tab; stopped (its process group) on exit."""
    commands_r, commands_w = map(above_4, os.pipe())
    replies_r, replies_w = map(above_4, os.pipe())
    # the browser's ends put on fds 3 and 4 by bash's redirections at exec (subprocess
    # keeps only the fds it is told of, by their numbers here; dash takes none over 9)
    move = f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w} {commands_r}<&- {replies_w}>&-'
    proc = subprocess.Popen(
        ["bash", "-c", move, chromium, "--headless=new", "--remote-debugging-pipe",
         "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile_dir}",
         "about:blank"],
        pass_fds=(commands_r, replies_w), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for fd in (commands_r, replies_w):
        os.close(fd)
    try:
        yield Page(proc, commands_w, replies_r)
    finally:
        os.close(commands_w)
        os.close(replies_r)
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait(10)
