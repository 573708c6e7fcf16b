"""Targets (bench/system/deployed.py), the /metrics sampler (bench/system/scrape.py) and the
whole-server usage collector (shop/serverusage.py): parsing, refusals, and arithmetic."""
from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bench.load.generator import LoadResult
from bench.run import unread_servers
from bench.system.deployed import TargetError, load_target, target_deployment, parse_target
from bench.system.sampler import Sample, window_usage
from bench.system.scrape import MetricsSampler, ScrapeError, read_process_metrics
from shop.serverusage import ServerUsage, server_usage

URL = "http://127.0.0.1:18000"
SPLIT = {"topology": "microservices", "base_url": URL,
         "metrics": {name: f"http://127.0.0.1:{18001 + i}/metrics" for i, name in
                     enumerate(("auth", "billing", "search", "notify", "gateway"))}}


def test_a_target_names_its_placement_and_servers():
    target = parse_target(SPLIT, "deployed/split.toml")
    assert target.name == "split" and target.topology.name == "split"  # the file's stem
    assert target.server_url("billing") == "http://127.0.0.1:18002"
    deployment = target_deployment(target, "secret")
    assert deployment.urls["notify"] == "http://127.0.0.1:18004"
    assert deployment.service_credential == "secret" and deployment.replica_urls == {}


def test_a_replicated_process_lists_every_replica():
    data = {**SPLIT, "topology": "microservices-billing-x2",
            "metrics": {**SPLIT["metrics"], "billing#2": "http://127.0.0.1:18010/metrics"}}
    target = parse_target(data, "x2.toml")
    assert target_deployment(target, "s").replica_urls == {
        "billing": ["http://127.0.0.1:18002", "http://127.0.0.1:18010"]}
    with pytest.raises(TargetError, match="lacks billing#2"):
        parse_target({**data, "metrics": SPLIT["metrics"]}, "x2.toml")


@pytest.mark.parametrize("change, says", [
    ({"topology": None}, "topology ="),
    ({"base_url": "127.0.0.1:80"}, "base_url must be an http://HOST:PORT URL"),
    ({"metrics": {}}, "[metrics] must map"),
    ({"metrics": {**SPLIT["metrics"], "cart": "http://127.0.0.1:1/metrics"}}, "'cart' is no server"),
    ({"metrics": {"auth": "http://127.0.0.1:1/metrics"}}, "lacks billing, search, notify, gateway"),
    ({"metrics": {**SPLIT["metrics"], "auth": "ftp://x"}}, "[metrics] auth must be"),
    ({"ready_timeout_s": 0}, "ready_timeout_s must be"),
    ({"colour": "red"}, "unknown key(s) ['colour']"),
])
def test_a_bad_target_is_refused_naming_the_file_and_the_problem(change, says):
    data = {k: v for k, v in {**SPLIT, **change}.items() if v is not None}
    with pytest.raises(TargetError) as caught:
        parse_target(data, "t.toml")
    assert str(caught.value).startswith("t.toml: ") and says in str(caught.value)


def test_a_target_file_may_name_a_topology_file_beside_it(tmp_path: Path):
    (tmp_path / "mine.toml").write_text('[process.app]\ncomponents = ["auth", "billing", '
                                        '"search", "notify"]\n')
    (tmp_path / "t.toml").write_text('topology = "mine.toml"\nbase_url = "http://127.0.0.1:9"\n'
                                     '[metrics]\napp = "http://127.0.0.1:9/metrics"\n')
    assert load_target(tmp_path / "t.toml").topology.processes == {
        "app": ("auth", "billing", "search", "notify")}
    (tmp_path / "bad.toml").write_text("topology = ")
    with pytest.raises(TargetError, match="not valid TOML"):
        load_target(tmp_path / "bad.toml")


def test_the_collector_reports_a_server_with_its_reaped_workers():
    """A child that ran and was reaped still counts: a worker gunicorn replaced."""
    before = server_usage(os.getpid())
    pid = os.fork()
    if pid == 0:  # burn ~0.2 s of CPU, then exit
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    after = server_usage(os.getpid())
    assert before is not None and after is not None
    assert after[0] - before[0] >= 0.15  # the child's CPU, in the parent's cutime
    registry = CollectorRegistry()
    registry.register(ServerUsage(os.getpid()))
    text = generate_latest(registry).decode()
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert server_usage(2**22 + 12345) is None  # no such pid: nothing to report


def test_a_server_that_restarted_counts_on_from_where_it_was(monkeypatch):
    readings = iter([(5.0, 100), (6.0, 100), (0.5, 90), (1.5, 90)])
    monkeypatch.setattr("bench.system.scrape.read_process_metrics", lambda url: next(readings))
    sampler = MetricsSampler({"auth": "http://127.0.0.1:1/metrics"})
    for _ in range(4):
        sampler.read_all()
    assert [s.cpu_s for s in sampler.samples] == [5.0, 6.0, 6.5, 7.5]


def _result(start: float, end: float) -> LoadResult:
    result = LoadResult.__new__(LoadResult)
    result.measure_start_s, result.measure_end_s = start, end
    return result


def test_a_step_whose_metrics_were_not_read_around_the_window_is_not_measured():
    sampler = MetricsSampler({"auth": "u", "billing": "v"})
    sampler.samples = [Sample(t, "system", -1, "auth", t, rss_bytes=1) for t in (9.0, 12.0, 15.0, 21.0)]
    sampler.samples += [Sample(t, "system", -2, "billing", t, rss_bytes=1) for t in (9.0, 15.0, 21.0)]
    sampler.errors = ["http://x/metrics: no answer (refused)"]
    [reason] = unread_servers(sampler, _result(10.0, 20.0))
    assert reason.code == "resources_unread" and "billing" in reason and "auth" not in reason
    assert "refused" in reason
    sampler.samples.append(Sample(12.0, "system", -2, "billing", 12.0, rss_bytes=1))
    assert unread_servers(sampler, _result(10.0, 20.0)) == []


def test_a_window_s_cpu_is_the_rate_inside_it_not_towards_idle_readings_after_it():
    """Load at 0.5 CPU-s per s until t = 20, idle after: a reading at 21 must not pull the
    window [10, 20]'s CPU down, nor one at 9 (before the load's steady state) push it."""
    cpu = {9.0: 0.9, 11.0: 1.5, 13.0: 2.5, 15.0: 3.5, 17.0: 4.5, 19.0: 5.5, 21.0: 6.0}
    sampler = MetricsSampler({"auth": "u"})
    sampler.samples = [Sample(t, "system", -1, "auth", c, rss_bytes=100) for t, c in cpu.items()]
    usage = window_usage(sampler.window_samples(10.0, 20.0), "system", 10.0, 20.0)
    assert usage.cpu_s == pytest.approx(5.0) and usage.rss_bytes_max == 100
    assert window_usage(sampler.samples, "system", 10.0, 20.0).cpu_s < 4.9  # what it avoids


def test_memory_read_from_metrics_is_summed_per_pass_and_has_no_pss():
    samples = [Sample(1.0, "system", -1, "a", 0.0, rss_bytes=10), Sample(1.0, "system", -2, "b", 0.0, rss_bytes=20),
               Sample(2.0, "system", -1, "a", 1.0, rss_bytes=15), Sample(2.0, "system", -2, "b", 2.0, rss_bytes=20)]
    usage = window_usage(samples, "system", 1.0, 2.0)
    assert usage.rss_bytes_max == 35 and usage.pss_bytes_max is None and usage.cpu_s == 3.0


def test_a_page_without_process_metrics_is_a_scrape_error():
    """A server that does not report its CPU (not the shop's /metrics) is named, not read as 0."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"# HELP up 1\n# TYPE up gauge\nup 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ScrapeError, match="no process_cpu_seconds_total"):
            read_process_metrics(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ScrapeError, match="no answer"):
        read_process_metrics(f"http://127.0.0.1:{server.server_port}/metrics", timeout_s=0.5)


def test_metrics_can_be_asked_for_the_process_metrics_alone():
    """Prometheus' name[] filter: a reader of CPU and memory gets those two families and no
    request histograms (whose files every worker would otherwise read at each scrape)."""
    from shop.telemetry import Telemetry
    from shop.web import create_base_app
    app = create_base_app("t", "credential", Telemetry())
    client = app.test_client()
    client.get("/healthz")  # a request, so the request histogram has a series
    whole = client.get("/metrics").get_data(as_text=True)
    assert "seambench_http_request_duration_seconds" in whole and "process_cpu_seconds_total" in whole
    only = client.get("/metrics?name[]=process_cpu_seconds_total"
                      "&name[]=process_resident_memory_bytes").get_data(as_text=True)
    assert "process_cpu_seconds_total" in only and "process_resident_memory_bytes" in only
    assert "seambench_" not in only


def test_a_written_target_reads_back_and_finds_its_credential_in_the_env_file(tmp_path, monkeypatch):
    from bench.system.deployed import DEFAULT_CREDENTIAL_ENV, target_text
    monkeypatch.delenv(DEFAULT_CREDENTIAL_ENV, raising=False)
    (tmp_path / "t.toml").write_text(target_text("mono", "monolith", "http://127.0.0.1:9",
                                                 {"app": "http://127.0.0.1:9/metrics"}, ".env",
                                                 "a comment\nof two lines"))
    target = load_target(tmp_path / "t.toml")
    assert (target.name, target.base_url, target.metrics) == (
        "mono", "http://127.0.0.1:9", {"app": "http://127.0.0.1:9/metrics"})
    assert target.credential() == ""  # no env file yet, no variable
    (tmp_path / ".env").write_text(f"# secrets\n{DEFAULT_CREDENTIAL_ENV}=from-the-file\n")
    assert target.credential() == "from-the-file"
    monkeypatch.setenv(DEFAULT_CREDENTIAL_ENV, "from-the-environment")
    assert target.credential() == "from-the-environment"  # the environment wins
