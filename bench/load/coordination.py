"""One open-loop schedule dealt among Locust's workers, coordinated by Locust's own master.

Runs inside Locust processes (the open-loop user imports it) and does nothing unless the
process is a master (``--master``) or a worker (``--worker``). Everything goes over Locust's
master/worker connection, so a worker may run on another machine and share no file with
the master:

* The master reads the plan (``PLAN_ENV``) and puts it, dealt among ``--expect-workers``
  (``bench.load.plan.deal``), in its parsed options, which Locust hands every worker with
  its spawn message. A worker's slice is its ``runner.worker_index``.
* Each worker, its scenario's set-up done, sends ``seambench_ready``; once every slice is
  ready (or its worker lost), the master sends ``seambench_go`` with one start time (epoch
  s) for all, so the slices add up to the one schedule in time too.
* Each worker sends ``seambench_result``: its result document, its own CPU over the
  measured window and its interval logs' text. The master writes them where
  ``bench.load.generator.collect`` reads them, as if the worker had written them there.
* A worker lost before its result (Locust's master marks it missing after
  ``HEARTBEAT_LIVENESS`` missed heartbeats, or it left) gets a failed result naming it and
  why, so the step is invalid with that reason, and the others finish their slices.

The master quits, and with it every worker, once each slice has a result or a reason.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import events
from locust.env import Environment
from locust.runners import HEARTBEAT_LIVENESS, STATE_MISSING, MasterRunner, WorkerRunner

from bench.load.distributed import MASTER_PORT_FILE, worker_name
from bench.load.plan import LoadPlan, deal, plan_from_env
from bench.results.store import write_json_atomic, write_text_atomic

READY, GO, RESULT = "seambench_ready", "seambench_go", "seambench_result"
START_LEAD_S = 0.25  # the go message's time to reach every worker before the shared start
WATCH_PERIOD_S = 0.5
log = logging.getLogger(__name__)


class MasterSide:
    """The master's part: hands out the start, receives results, notices lost workers."""

    def __init__(self, runner: MasterRunner, plans: list[LoadPlan]) -> None:
        self.runner = runner
        self.plans = plans  # one per slice, with this machine's output paths
        self.ready: dict[int, dict[str, Any]] = {}  # slice -> its worker's identity
        self.settled: set[int] = set()  # slices with a result, or a reason for none
        self.started = False
        self.finished = False

    def on_ready(self, environment: Environment, msg: Any, **_: Any) -> None:
        identity = msg.data
        if identity["index"] < len(self.plans):
            self.ready[identity["index"]] = identity
        self._start_when_ready()

    def on_result(self, environment: Environment, msg: Any, **_: Any) -> None:
        doc = dict(msg.data)
        index = doc["worker"]["index"]
        if index >= len(self.plans) or index in self.settled:
            return  # not a slice of this run, or already judged lost: the first verdict stands
        plan = self.plans[index]
        logs = doc.pop("logs", {})
        for path, text in ((plan.interval_log_path(), logs.get("intervals")),
                           (plan.reference_log_path(), logs.get("reference")),
                           (plan.observed_log_path(), logs.get("observed"))):
            if text is not None:
                write_text_atomic(path, text)
        write_json_atomic(plan.result_path(), doc)
        self._settle(index)

    def watch(self) -> None:
        """Every ``WATCH_PERIOD_S``: a worker that holds a slice without a result, and that
        Locust's master has marked missing or no longer lists, is lost."""
        while not self.finished:
            for client_id, index in list(self.runner.worker_indexes.items()):
                if index >= len(self.plans) or index in self.settled:
                    continue
                client = self.runner.clients.get(client_id)
                if client is None:
                    why = "it left before sending its result (it quit, or its connection closed)"
                elif client.state == STATE_MISSING:
                    why = (f"lost: no heartbeat of it reached Locust's master for over "
                           f"{HEARTBEAT_LIVENESS} s (it died, hung, or lost its network)")
                else:
                    continue
                self.fail(index, why, self.ready.get(index)
                          or {"index": index, "host": client_id.rsplit("_", 1)[0]})
            gevent.sleep(WATCH_PERIOD_S)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        """The master stops (its time limit, a signal): every slice without a result says so."""
        self.finished = True  # already quitting
        for index in range(len(self.plans)):
            if index not in self.settled:
                self.fail(index, "no result before the master stopped (its time limit, or "
                                 "a stop signal)", self.ready.get(index) or {"index": index})

    def fail(self, index: int, reason: str, identity: dict[str, Any]) -> None:
        """Write slice ``index``'s result as failed, for ``reason``."""
        log.warning("%s did not complete: %s", worker_name(identity), reason)
        write_json_atomic(self.plans[index].result_path(),
                          {"complete": False, "error": reason, "worker": identity,
                           "plan": self.plans[index].to_json()})
        self._settle(index)

    def _settle(self, index: int) -> None:
        self.settled.add(index)
        self._start_when_ready()
        if len(self.settled) == len(self.plans) and not self.finished:
            self.finished = True
            gevent.spawn(self.runner.quit)

    def _start_when_ready(self) -> None:
        if self.started or not all(i in self.ready or i in self.settled
                                   for i in range(len(self.plans))):
            return
        self.started = True
        self.runner.send_message(GO, {"start_epoch_s": time.time() + START_LEAD_S})


class WorkerSide:
    """A worker's part: its slice of the plan, the shared start, its result sent home."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.start = AsyncResult()  # the shared start, epoch seconds
        self.claimed = False
        self._plan: LoadPlan | None = None
        self._cpu: gevent.Greenlet | None = None

    def on_go(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.start.set(msg.data["start_epoch_s"])

    def plan(self, environment: Environment) -> LoadPlan:
        """This worker's slice of the master's plan, its files in a scratch directory of its
        own (sent to the master by ``report``, then removed); one per worker process."""
        if self._plan is None:
            dealt = LoadPlan.from_json(environment.parsed_options.seambench_plan)
            scratch = tempfile.mkdtemp(prefix=f"seambench-worker-{self.runner.worker_index}-")
            self._plan = replace(dealt, process_index=self.runner.worker_index, output_dir=scratch)
        return self._plan

    def claim(self) -> bool:
        """True the first time: a worker runs one slice. Locust hands a surviving worker a
        lost one's user when it rebalances; that second user must send nothing."""
        first, self.claimed = not self.claimed, True
        return first

    def identity(self, plan: LoadPlan) -> dict[str, Any]:
        return {"index": plan.process_index, "host": socket.gethostname(), "pid": os.getpid()}

    def await_start(self, plan: LoadPlan) -> float:
        """Say this slice is ready and wait for the master's start (epoch seconds); from then
        this worker measures its own CPU over the measured window (the harness cannot sample
        a process on another machine)."""
        self.runner.send_message(READY, self.identity(plan))
        start_epoch_s = self.start.get()
        self._cpu = gevent.spawn(_cpu_share, start_epoch_s + plan.warmup_s,
                                 start_epoch_s + plan.total_s)
        return start_epoch_s

    def report(self, plan: LoadPlan, doc: dict[str, Any]) -> None:
        """Send ``doc`` (the recorder's result) to the master with this worker's identity, its
        CPU (cores' worth over the measured window) and its interval logs."""
        cpu = None
        if self._cpu is not None:
            if doc.get("complete"):  # the window ends about when the schedule does
                self._cpu.join()
            self._cpu.kill()  # a killed greenlet's value is its GreenletExit
            cpu = self._cpu.value if isinstance(self._cpu.value, float) else None
        logs = {what: path.read_text()
                for what, path in (("intervals", plan.interval_log_path()),
                                   ("reference", plan.reference_log_path()),
                                   ("observed", plan.observed_log_path())) if path.exists()}
        try:
            self.runner.send_message(RESULT, {**doc, "worker": self.identity(plan),
                                              "generator_cpu": cpu, "logs": logs})
        finally:
            shutil.rmtree(plan.output_dir, ignore_errors=True)


def _cpu_share(start_epoch_s: float, end_epoch_s: float) -> float:
    """This process's CPU in [start, end] (epoch s), in cores' worth."""
    gevent.sleep(max(0.0, start_epoch_s - time.time()))
    wall, cpu = time.time(), time.process_time()
    gevent.sleep(max(0.0, end_epoch_s - time.time()))
    return (time.process_time() - cpu) / max(1e-9, time.time() - wall)


_workers: weakref.WeakKeyDictionary[Environment, WorkerSide] = weakref.WeakKeyDictionary()


def worker_side(environment: Environment) -> WorkerSide | None:
    """This process's worker part, or None when it is not a Locust worker."""
    return _workers.get(environment)


def _on_init(environment: Environment, runner: Any = None, **_: Any) -> None:
    if isinstance(runner, MasterRunner):
        plan = plan_from_env()
        plans = deal(plan, environment.parsed_options.expect_workers)
        # each worker takes its own slice index and output directory (``WorkerSide.plan``)
        environment.parsed_options.seambench_plan = plans[0].to_json()
        side = MasterSide(runner, plans)
        runner.register_message(READY, side.on_ready)
        runner.register_message(RESULT, side.on_result)
        environment.events.quitting.add_listener(side.on_quitting)
        runner.greenlet.spawn(side.watch)
        # the harness started us on any free port: it reads which from here
        write_text_atomic(Path(plan.output_dir) / MASTER_PORT_FILE, str(runner.server.port))
    elif isinstance(runner, WorkerRunner):
        side = WorkerSide(runner)
        runner.register_message(GO, side.on_go)
        _workers[environment] = side


def _add_arguments(parser: Any, **_: Any) -> None:
    # a custom argument, so Locust hands it to every worker with its spawn message
    parser.add_argument("--seambench-plan", default="", include_in_web_ui=False,
                        help="set by a seambench master for its workers: the dealt plan (JSON)")


# Locust's documented way in: a locustfile's module-level listeners (registering is all
# that happens at import; they run only in a Locust process).
events.init.add_listener(_on_init)
events.init_command_line_parser.add_listener(_add_arguments)
