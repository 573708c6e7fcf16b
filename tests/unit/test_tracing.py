"""Opt-in tracing (shop/tracing.py): off it costs no import; on, a request is one trace from
the caller's SERVER span through the hop's CLIENT span to the callee's SERVER span, written
as OTLP JSON and sampled by trace (a sampled-out caller means no span in the callee)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask, Response
from werkzeug.serving import make_server

from shop.errors import Unavailable
from shop.hops import HopClient, HopSettings
from shop.telemetry import Telemetry
from shop.tracing import (DIR_ENV, OTLP_URL_ENV, RATIO_ENV, read_spans, shutdown_all,
                          tracer_from_env)
from shop.web import create_base_app, json_body, json_response

ROOT = Path(__file__).resolve().parents[2]
HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def span_dir(monkeypatch, tmp_path) -> Iterator[Path]:
    """Tracing on, every trace sampled, spans in the returned directory; flushed after."""
    directory = tmp_path / "spans"
    monkeypatch.setenv(RATIO_ENV, "1")
    monkeypatch.setenv(DIR_ENV, str(directory))
    monkeypatch.delenv(OTLP_URL_ENV, raising=False)
    yield directory
    shutdown_all()


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """``app`` on a real socket (a thread per request), its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def callee_app() -> Flask:
    app = create_base_app("callee", "cred", Telemetry())  # traced from the environment

    @app.post("/echo/<item>")
    def echo(item: str) -> Response:
        return json_response({"item": item, "got": json_body()})

    return app


def imported_otel(env: dict[str, str]) -> list[str]:
    """The opentelemetry modules a fresh interpreter has after building and calling an app."""
    script = (
        "import sys\n"
        "from shop.telemetry import Telemetry\n"
        "from shop.tracing import tracer_from_env\n"
        "from shop.web import create_base_app\n"
        "app = create_base_app('p', 'cred', Telemetry())\n"
        "assert app.test_client().get('/healthz').status_code == 200\n"
        "print(tracer_from_env('p') is None)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    is_none, modules = done.stdout.splitlines()
    assert is_none == str(not env.get(RATIO_ENV))
    return json.loads(modules.replace("'", '"'))


def test_tracing_is_off_and_imports_nothing_unless_the_ratio_is_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (RATIO_ENV, DIR_ENV, OTLP_URL_ENV)}
    assert imported_otel(env) == []
    assert imported_otel({**env, RATIO_ENV: ""}) == []  # empty is unset
    # The same script does import it once tracing is on: the check above can see an import.
    assert "opentelemetry.trace" in imported_otel(
        {**env, RATIO_ENV: "1", DIR_ENV: str(tmp_path / "spans")})


@pytest.mark.parametrize("ratio", ["often", "0", "-0.5", "1.5", "nan", "inf"])
def test_a_bad_ratio_is_refused_naming_the_variable(monkeypatch, tmp_path, ratio):
    monkeypatch.setenv(RATIO_ENV, ratio)
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=RATIO_ENV) as caught:
        tracer_from_env("p")
    assert "\n" not in str(caught.value)


def test_a_ratio_without_a_directory_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv(RATIO_ENV, "0.5")
    monkeypatch.delenv(DIR_ENV, raising=False)
    with pytest.raises(ValueError, match=DIR_ENV):
        tracer_from_env("p")


def test_the_file_exporter_writes_otlp_json_that_read_spans_reads_back(span_dir):
    tracer = tracer_from_env("billing")
    with tracer.start_as_current_span("outer", attributes={"n": 3, "ok": True}) as outer:
        with tracer.start_as_current_span("inner"):
            pass
    shutdown_all()
    files = list(span_dir.glob("spans-*.jsonl"))
    assert [f.name for f in files] == [f"spans-billing-{os.getpid()}.jsonl"]
    lines = files[0].read_text().splitlines()
    request = json.loads(lines[0])  # one export call: one line, both spans
    resource = request["resourceSpans"][0]
    assert {"key": "service.name", "value": {"stringValue": "billing"}} \
        in resource["resource"]["attributes"]
    first = resource["scopeSpans"][0]["spans"][0]
    assert HEX32.fullmatch(first["traceId"]) and HEX16.fullmatch(first["spanId"])
    assert int(first["startTimeUnixNano"]) > 1_600_000_000 * 10**9  # ns since the epoch
    assert resource["scopeSpans"][0]["scope"]["name"] == "seambench"

    spans = {s["name"]: s for s in read_spans(span_dir)}
    assert set(spans) == {"outer", "inner"}
    assert spans["outer"]["trace_id"] == f"{outer.get_span_context().trace_id:032x}"
    assert spans["outer"]["span_id"] == f"{outer.get_span_context().span_id:016x}"
    assert spans["outer"]["parent_span_id"] is None
    assert spans["inner"]["parent_span_id"] == spans["outer"]["span_id"]
    assert spans["inner"]["trace_id"] == spans["outer"]["trace_id"]
    assert spans["outer"]["attributes"] == {"n": 3, "ok": True}
    assert spans["outer"]["kind"] == "internal" and spans["outer"]["service"] == "billing"
    assert spans["outer"]["start_ns"] <= spans["inner"]["start_ns"] \
        <= spans["inner"]["end_ns"] <= spans["outer"]["end_ns"]


def test_one_trace_runs_from_the_caller_through_the_hop_to_the_callee(span_dir):
    with served(callee_app()) as url:
        hop = HopClient(url, "cred", name="callee")
        caller = create_base_app("caller", "cred", Telemetry())
        hop.tracer = tracer_from_env("caller")

        @caller.get("/call")
        def call() -> Response:
            return json_response(hop.call("/echo/x7", {"n": 1}, idempotent=True))

        answer = caller.test_client().get("/call")
        hop.close()
    assert answer.status_code == 200 and answer.get_json() == {"item": "x7", "got": {"n": 1}}
    assert "traceparent" not in hop._headers  # injected into a copy only
    shutdown_all()

    spans = read_spans(span_dir)
    assert len({s["trace_id"] for s in spans}) == 1
    (server,) = [s for s in spans if s["kind"] == "server" and s["service"] == "caller"]
    (client,) = [s for s in spans if s["kind"] == "client"]
    (remote,) = [s for s in spans if s["kind"] == "server" and s["service"] == "callee"]
    assert server["parent_span_id"] is None and server["name"] == "GET /call"
    assert server["attributes"] == {"http.request.method": "GET", "http.route": "/call",
                                    "url.path": "/call", "http.response.status_code": 200,
                                    "seambench.process": "caller"}
    assert client["parent_span_id"] == server["span_id"] and client["name"] == "hop callee"
    assert client["attributes"] == {"seambench.callee": "callee", "http.request.method": "POST",
                                    "url.path": "/echo/x7", "http.response.status_code": 200}
    assert remote["parent_span_id"] == client["span_id"]
    assert remote["name"] == "POST /echo/<item>"
    assert remote["attributes"]["http.route"] == "/echo/<item>"
    # The hop contains the callee's whole answer, on this one clock.
    assert client["end_ns"] - client["start_ns"] >= remote["end_ns"] - remote["start_ns"] > 0
    assert client["start_ns"] <= remote["start_ns"] and remote["end_ns"] <= client["end_ns"]

    def internal_under(parent: dict) -> list[str]:
        return sorted(s["name"] for s in spans
                      if s["kind"] == "internal" and s["parent_span_id"] == parent["span_id"])

    # The caller encodes the hop's request, parses its answer, encodes its own response;
    # the callee parses the request body and encodes its response.
    assert internal_under(server) == ["encode", "encode", "parse"]
    assert internal_under(remote) == ["encode", "parse"]
    assert all(s["service"] == "callee" for s in spans if s["parent_span_id"] == remote["span_id"])
    assert len(spans) == 8


def test_a_server_span_ends_on_errors_and_unknown_routes_keep_their_path(span_dir):
    app = create_base_app("p", "cred", Telemetry())

    @app.get("/boom")
    def boom() -> Response:
        raise RuntimeError("boom")

    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/nowhere/7").status_code == 404
    shutdown_all()
    spans = {s["name"]: s for s in read_spans(span_dir) if s["kind"] == "server"}
    assert set(spans) == {"GET /boom", "GET /nowhere/7"}
    assert spans["GET /boom"]["attributes"]["http.response.status_code"] == 500
    assert spans["GET /nowhere/7"]["attributes"]["http.response.status_code"] == 404
    assert "http.route" not in spans["GET /nowhere/7"]["attributes"]


def test_a_hop_that_gets_no_answer_is_an_error_span(span_dir):
    tracer = tracer_from_env("caller")
    with served(callee_app()) as url:
        pass  # the port is free again: nothing answers there now
    hop = HopClient(url, "cred", HopSettings(retries=0, breaker_failures=0), name="callee")
    hop.tracer = tracer
    with tracer.start_as_current_span("root"), pytest.raises(Unavailable):
        hop.send("GET", "/x?y=1", None, {}, idempotent=True)
    shutdown_all()
    (client,) = [s for s in read_spans(span_dir) if s["kind"] == "client"]
    assert client["attributes"]["error.type"] == "Unavailable"
    assert client["attributes"]["url.path"] == "/x"
    assert "http.response.status_code" not in client["attributes"]


def test_half_the_traces_are_sampled_at_a_ratio_of_one_half(span_dir, monkeypatch):
    monkeypatch.setenv(RATIO_ENV, "0.5")
    client = create_base_app("p", "cred", Telemetry()).test_client()
    for _ in range(400):
        assert client.get("/healthz").status_code == 200
    shutdown_all()
    sampled = [s for s in read_spans(span_dir) if s["kind"] == "server"]
    assert 120 <= len(sampled) <= 280, len(sampled)
    assert len({s["trace_id"] for s in sampled}) == len(sampled)  # each request a root


def test_the_callee_follows_its_callers_sampling_decision(span_dir, monkeypatch):
    monkeypatch.setenv(RATIO_ENV, "1")  # the callee alone would sample every trace
    client = callee_app().test_client()
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    for flags in ("00", "01"):  # sampled out, then in
        answer = client.post("/echo/1", json={}, headers={
            "traceparent": f"00-{trace_id}-{parent}-{flags}", "tracestate": "k=v"})
        assert answer.status_code == 200
    shutdown_all()
    spans = read_spans(span_dir)
    (server,) = [s for s in spans if s["kind"] == "server"]  # the sampled-in call's only
    assert server["trace_id"] == trace_id and server["parent_span_id"] == parent
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert len(spans) == 3  # its server span, parse and encode: none of the sampled-out call


def test_spans_also_reach_an_otlp_collector_when_a_url_is_given(span_dir, monkeypatch):
    """A stand-in collector on loopback: what the OTLP/HTTP exporter POSTs is protobuf
    ExportTraceServiceRequest, and it holds the same spans the file got."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest)

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(OTLP_URL_ENV, f"http://127.0.0.1:{server.server_port}/v1/traces")
        tracer = tracer_from_env("search")
        with tracer.start_as_current_span("query"):
            pass
        shutdown_all()
    finally:
        server.shutdown()
        thread.join(5)
    assert received, "the collector got nothing"
    path, content_type, body = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    [resource] = request.resource_spans
    names = [s.name for scope in resource.scope_spans for s in scope.spans]
    assert names == ["query"]
    assert [s["name"] for s in read_spans(span_dir)] == ["query"]  # the file got it too
