"""The open-loop Locust user that every seambench scenario builds on.

Locust's own users are closed-loop: a slow response delays the next request, so a stall
hides itself (coordinated omission). Here one Locust user is a *scheduler*: it sends each
request at its intended time from the ``LoadPlan`` schedule, each in its own greenlet from
a bounded pool, and every latency is measured from that intended time. How late each send
was and how many arrivals were dropped (pool full) are recorded too; dropped arrivals and
requests still in flight when the drain ends enter the histograms as censored values
(drain end minus intended time; see ``bench.load.recorder``).

Recording goes through Locust's ``request`` event: each request carries its intended send
time in its context and the listener puts the unrounded value into µs HdrHistograms.

Run one with ``locust -f <scenario file> --headless -u 1 -r 1 --host URL`` and
``SEAMBENCH_LOAD_PLAN=plan.json``; without a plan, a 60 s run at 50 req/s into ./load-out.
Under Locust's master/worker mode each worker sends its slice of one schedule, starting when
the master says, and sends its results to the master (``bench.load.coordination``).
"""
from __future__ import annotations

import gc
import random
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import gevent
import gevent.event
from gevent import GreenletExit
from gevent.pool import Pool
from locust import User, task

from bench.load.coordination import worker_side
from bench.load.deadline import DeadlineTimer
from bench.load.leanhttp import LeanHttpClient
from bench.load.plan import arrival_offsets_ns, plan_from_env
from bench.load.recorder import Recorder
from bench.results.store import write_json_atomic

INTENDED = "seambench_intended_ns"
Send = Callable[[dict], object]  # sends one request, passing the given Locust context
SWITCH_INTERVAL_S = 0.0002  # how long a thread (Locust's or a library's) may hold the GIL
# Each arrival is dispatched this long before its intended time (at most 5% of the mean gap,
# so at most 5% of a core goes to waiting): the wake-up from idle and the bookkeeping happen
# before the send. After an idle gap this VM's first few hundred µs of work run cold and
# slow (timer to dispatch to greenlet start: ~0.4 ms at the median, ~1 ms at p99 at
# 30 req/s), so at low rates a lead of a few hundred µs still left p99 lateness at ~0.6 ms.
LEAD_MAX_NS = 2_000_000
LEAD_FRACTION = 0.05


class OpenLoopUser(User):
    """Subclasses give ``prepare`` (untimed set-up) and ``next_request`` (one arrival).

    ``self.client`` is a ``LeanHttpClient`` on the target host with the plan's connection
    limit: Locust's ``FastHttpSession`` spent about 0.27 CPU-ms per request, which both
    added to every latency and capped one process's rate. It fires Locust's ``request``
    event like Locust's own clients, so recording and Locust's statistics are unchanged."""

    abstract = True
    network_timeout = 30.0
    connection_timeout = 10.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # a Locust worker of a distributed run gets its slice of the plan from its master
        self.worker = worker_side(self.environment)
        self.plan = self.worker.plan(self.environment) if self.worker else plan_from_env()
        self.client = self.http_client(self.host)
        # the request mix has its own stream, apart from the arrival schedule's (and, for a
        # slice of a dealt schedule, apart from the other slices')
        self.rng = random.Random(f"mix-{self.plan.seed}" if self.plan.slices == 1 else
                                 f"mix-{self.plan.seed}-{self.plan.process_index}")

    def http_client(self, base_url: str) -> LeanHttpClient:
        """A keep-alive client for ``base_url`` (``http://host:port``) reporting to Locust's
        ``request`` event; one per server, so switching servers never reconnects."""
        return LeanHttpClient(base_url, self.environment.events.request,
                              connections=self.plan.connections,
                              connection_timeout=self.connection_timeout,
                              network_timeout=self.network_timeout)

    def prepare(self) -> None:
        """Set-up before the schedule starts (e.g. log users in); not recorded."""

    def next_request(self) -> tuple[str, Send]:
        """The next arrival: its name (for the histograms) and how to send it."""
        raise NotImplementedError

    # Scenarios whose answers report timings of their own set this and define ``observe``.
    observes = False

    def observe(self, name: str, response: object, latency_us: int) -> dict[str, list[int]]:
        """Named values (µs) read from a successful answer to request ``name`` (whose latency
        was ``latency_us``), recorded apart from latencies (``Recorder.observe``). Runs in
        the event listener, after the latency was taken; its cost delays later sends, so
        keep it to a JSON parse."""
        return {}

    @task
    def drive(self) -> None:
        if self.worker and not self.worker.claim():
            gevent.event.Event().wait()  # a second user on this worker: its slice is taken
        plan = self.plan
        Path(plan.output_dir).mkdir(parents=True, exist_ok=True)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        complete = stopped = False
        recorder = None
        unfinished = 0
        error = ""
        try:
            self.prepare()
            with open(plan.interval_log_path(), "w") as log, ExitStack() as more:
                reference_log = (more.enter_context(open(plan.reference_log_path(), "w"))
                                 if plan.reference else None)
                observed_log = (more.enter_context(open(plan.observed_log_path(), "w"))
                                if self.observes else None)
                if self.worker:  # every slice starts at the master's one start time
                    start_epoch_s = self.worker.await_start(plan)
                    start_ns = time.perf_counter_ns() + int((start_epoch_s - time.time()) * 1e9)
                else:
                    start_ns = time.perf_counter_ns() + 50_000_000  # a little lead to settle
                    start_epoch_s = time.time() + 0.05
                recorder = Recorder(start_ns, start_epoch_s, int(plan.warmup_s * 1e9), log,
                                    comment=f"seambench generator {plan.process_index} on "
                                            f"{socket.gethostname()}, latency in us",
                                    end_ns=start_ns + int(plan.options.get("phase_ns", 0))
                                    + int(plan.total_s * 1e9),
                                    reference=plan.reference, reference_log=reference_log,
                                observed_log=observed_log)
                self._listen(recorder)
                # the cyclic garbage collector's pauses would be send lateness: the set-up's
                # objects are frozen out of it and it waits until the schedule has ended
                gc.collect()
                gc.freeze()
                gc.disable()
                try:
                    unfinished = self._schedule(recorder, start_ns)
                finally:
                    gc.enable()
                recorder.finish(time.perf_counter_ns())
                complete = True
        except Exception as exc:  # said in the result, which the harness reports
            error = f"{type(exc).__name__}: {exc}"
            raise
        except GreenletExit:  # Locust stops its users (it quits): block on nothing more
            error, stopped = "stopped by Locust before the schedule's end", True
            raise
        finally:
            doc = recorder.result(unfinished=unfinished) if recorder else {}
            doc = {**doc, "complete": complete, "error": error, "plan": plan.to_json()}
            if self.worker:
                self.worker.report(plan, doc)
                if not stopped:  # the master ends the run; a returning task would run again
                    gevent.event.Event().wait()
            else:
                write_json_atomic(plan.result_path(), doc)
                # Stop the whole Locust process: a returning task would only be scheduled again.
                gevent.spawn(self.environment.runner.quit)
                gevent.sleep(60)

    def _listen(self, recorder: Recorder) -> None:
        observes = self.observes
        def on_request(context: dict, response_time: float, exception: object,
                       response: object = None, name: str = "", **_: object) -> None:
            intended = context.get(INTENDED)
            if intended is None:
                return
            status = getattr(response, "status_code", 0) or 0
            # the lean client stamps when the response's last byte arrived; parsing it and
            # the listeners before this one (Locust's statistics) are not the target's time
            done = getattr(response, "done_ns", 0) or time.perf_counter_ns()
            recorder.record(name, intended, done, exception is None, status)
            if observes and exception is None and response is not None:
                for what, values in self.observe(name, response,
                                                 (done - intended) // 1000).items():
                    recorder.observe(what, intended, values)

        self.environment.events.request.add_listener(on_request)

    def _schedule(self, recorder: Recorder, start_ns: int) -> int:
        """Send every arrival at its intended time; returns how many never finished.

        gevent's timers wake up to 1 ms late (libev rounds epoll timeouts up to whole ms),
        which would add up to 1 ms of the generator's own lateness to every latency. So the
        hub waits on a ``DeadlineTimer`` (a timerfd in its own epoll, µs-precise), armed a
        lead before each intended time: the arrival's bookkeeping and greenlet are done
        before that time, and the greenlet waits (yielding) for it before it sends, so the
        CPU's wake-up from idle is not counted as latency either."""
        plan = self.plan
        pool = Pool(plan.max_in_flight)
        phase = int(plan.options.get("phase_ns", 0))
        lead_ns = min(LEAD_MAX_NS, int(LEAD_FRACTION * 1e9 / plan.own_rate_per_s))
        arrivals = (start_ns + phase + offset for offset in arrival_offsets_ns(plan))
        due: deque[int] = deque()  # the next arrival, once its intended time is known
        finished = gevent.event.Event()
        failed: list[Exception] = []

        def dispatch() -> None:  # runs in the hub: must neither block nor fail unseen
            try:
                dispatch_due()
            except Exception as exc:  # a scenario's next_request raised: the run stops, saying so
                failed.append(exc)
                finished.set()

        def dispatch_due() -> None:
            now = time.perf_counter_ns()
            while True:
                if not due:
                    intended = next(arrivals, None)
                    if intended is None:
                        finished.set()
                        return
                    due.append(intended)
                intended = due[0]
                if intended - lead_ns > now:
                    timer.arm(intended - lead_ns)
                    return
                due.popleft()
                recorder.scheduled_one(intended)
                name, send = self.next_request()
                if pool.full():
                    recorder.dropped(name, intended)
                else:
                    recorder.admitted(name, intended)  # in flight from now: censored if unanswered
                    pool.spawn(self._send, recorder, send, name, intended)

        timer = DeadlineTimer(dispatch)
        ticker = gevent.spawn(self._tick, recorder)
        gevent.get_hub().loop.run_callback(dispatch)
        try:
            finished.wait()
            if failed:
                pool.kill(block=False)
                raise failed[0]
            pool.join(timeout=plan.drain_timeout_s)
            unfinished = len(pool)
            # the killed sends run no further before the caller's recorder.finish, which
            # censors them at the drain's end
            pool.kill(block=False)
            return unfinished
        finally:
            ticker.kill(block=False)
            timer.close()

    @staticmethod
    def _send(recorder: Recorder, send: Send, name: str, intended: int) -> None:
        while time.perf_counter_ns() < intended:  # dispatched a lead early: be on time,
            gevent.sleep(0)  # letting other requests' responses in meanwhile
        sent = time.perf_counter_ns()
        recorder.sending(intended, sent)
        try:
            send({INTENDED: intended})
        finally:  # a send that raised without a request event is an error, not lost
            recorder.settled(name, intended, time.perf_counter_ns())

    @staticmethod
    def _tick(recorder: Recorder) -> None:
        while True:
            gevent.sleep(0.25)
            recorder.rotate(time.perf_counter_ns())
