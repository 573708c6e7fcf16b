"""The open-loop Locust user that every seambench scenario builds on.

Locust's own users are closed-loop: a slow response delays the next request, so a stall
hides itself (coordinated omission). Here one Locust user is a *scheduler*: it sends each
request at its intended time from the ``LoadPlan`` schedule, each in its own greenlet from
a bounded pool, and every latency is measured from that intended time. How late each send
was and how many arrivals were dropped (pool full) are recorded too; dropped arrivals and
requests still in flight when the drain ends enter the histograms as censored values
(drain end minus intended time; see ``bench.recorder``).

Recording goes through Locust's ``request`` event: each request carries its intended send
time in its context and the listener puts the unrounded value into µs HdrHistograms.

Run one with ``locust -f bench/scenarios/<file>.py --headless -u 1 -r 1 --host URL`` and
``SEAMBENCH_LOAD_PLAN=plan.json``; without a plan, a 60 s run at 50 req/s into ./load-out.
"""
from __future__ import annotations

import os
import random
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.event
from gevent.monkey import get_original
from gevent.pool import Pool
from locust import FastHttpUser, task

from bench.loadplan import PLAN_ENV, LoadPlan, arrival_offsets_ns
from bench.recorder import Recorder
from bench.store import write_json_atomic

INTENDED = "seambench_intended_ns"
Send = Callable[[dict], object]  # sends one request, passing the given Locust context
native_sleep = get_original("time", "sleep")  # the real clock_nanosleep, not gevent's
SWITCH_INTERVAL_S = 0.0002  # how long the clock thread may wait for the GIL (default 5 ms)


def plan_from_env() -> LoadPlan:
    path = os.environ.get(PLAN_ENV)
    if path:
        return LoadPlan.from_json(Path(path).read_text())
    return LoadPlan(rate_per_s=50, duration_s=60, warmup_s=5, output_dir="load-out")


class OpenLoopUser(FastHttpUser):
    """Subclasses give ``prepare`` (untimed set-up) and ``next_request`` (one arrival)."""

    abstract = True
    network_timeout = 30.0
    connection_timeout = 10.0

    def __init__(self, *args, **kwargs) -> None:
        self.plan = plan_from_env()
        self.concurrency = self.plan.connections  # read by FastHttpUser.__init__
        super().__init__(*args, **kwargs)
        # the request mix has its own stream, apart from the arrival schedule's
        self.rng = random.Random(f"mix-{self.plan.seed}")

    def prepare(self) -> None:
        """Set-up before the schedule starts (e.g. log users in); not recorded."""

    def next_request(self) -> tuple[str, Send]:
        """The next arrival: its name (for the histograms) and how to send it."""
        raise NotImplementedError

    @task
    def drive(self) -> None:
        plan = self.plan
        Path(plan.output_dir).mkdir(parents=True, exist_ok=True)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        complete = False
        recorder = None
        unfinished = 0
        error = ""
        try:
            self.prepare()
            with open(plan.interval_log_path(), "w") as log:
                start_ns = time.perf_counter_ns() + 50_000_000  # a little lead to settle
                start_epoch_s = time.time() + 0.05
                recorder = Recorder(start_ns, start_epoch_s, int(plan.warmup_s * 1e9), log,
                                    comment=f"seambench generator {plan.process_index} on "
                                            f"{socket.gethostname()}, latency in us",
                                    end_ns=start_ns + int(plan.options.get("phase_ns", 0))
                                    + int(plan.total_s * 1e9))
                self._listen(recorder)
                unfinished = self._schedule(recorder, start_ns)
                recorder.finish(time.perf_counter_ns())
                complete = True
        except Exception as exc:  # said in the result, which the harness reports
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            doc = recorder.result(unfinished=unfinished) if recorder else {}
            write_json_atomic(plan.result_path(), {**doc, "complete": complete, "error": error,
                                                   "plan": plan.to_json()})
            # Stop the whole Locust process: a returning task would only be scheduled again.
            gevent.spawn(self.environment.runner.quit)
            gevent.sleep(60)

    def _listen(self, recorder: Recorder) -> None:
        def on_request(context: dict, response_time: float, exception: object,
                       response: object = None, name: str = "", **_: object) -> None:
            intended = context.get(INTENDED)
            if intended is None:
                return
            status = getattr(response, "status_code", 0) or 0
            recorder.record(name, intended, time.perf_counter_ns(), response_time * 1000,
                            exception is None, status)

        self.environment.events.request.add_listener(on_request)

    def _schedule(self, recorder: Recorder, start_ns: int) -> int:
        """Send every arrival at its intended time; returns how many never finished.

        gevent's timers wake up to 1 ms late (libev rounds epoll timeouts up to whole ms),
        which would add up to 1 ms of the generator's own lateness to every latency. So a
        native thread sleeps to each deadline (clock_nanosleep, ~60 us slack) and wakes the
        hub through an async watcher; the hub then spawns the request's greenlet."""
        plan = self.plan
        pool = Pool(plan.max_in_flight)
        phase = int(plan.options.get("phase_ns", 0))
        hub = gevent.get_hub()
        due: deque[int | None] = deque()
        finished = gevent.event.Event()

        def dispatch() -> None:  # runs in the hub: must not block
            while due:
                intended = due.popleft()
                if intended is None:
                    finished.set()
                    return
                recorder.scheduled_one(intended)
                name, send = self.next_request()
                if pool.full():
                    recorder.dropped(name, intended)
                else:
                    recorder.admitted(name, intended)  # in flight from now: censored if unanswered
                    pool.spawn(self._send, recorder, send, name, intended)

        def clock() -> None:  # a native thread
            for offset in arrival_offsets_ns(plan):
                intended = start_ns + phase + offset
                delay = intended - time.perf_counter_ns()
                if delay > 0:
                    native_sleep(delay / 1e9)
                due.append(intended)
                wake.send()
            due.append(None)
            wake.send()

        wake = hub.loop.async_()
        wake.start(dispatch)
        ticker = gevent.spawn(self._tick, recorder)
        hub.threadpool.spawn(clock)
        try:
            finished.wait()
            pool.join(timeout=plan.drain_timeout_s)
            unfinished = len(pool)
            # the killed sends run no further before the caller's recorder.finish, which
            # censors them at the drain's end
            pool.kill(block=False)
            return unfinished
        finally:
            ticker.kill(block=False)
            wake.stop()

    @staticmethod
    def _send(recorder: Recorder, send: Send, name: str, intended: int) -> None:
        sent = time.perf_counter_ns()
        recorder.sending(intended, sent)
        try:
            send({INTENDED: intended})
        finally:  # a send that raised without a request event is an error, not lost
            recorder.settled(name, intended, sent, time.perf_counter_ns())

    @staticmethod
    def _tick(recorder: Recorder) -> None:
        while True:
            gevent.sleep(0.25)
            recorder.rotate(time.perf_counter_ns())
