"""The command line's conventions, command by command: -h and --version, `list`, durations
written as Locust and wrk2 take them, `load` with headers and a body, and the one exit-code
table (bench/exitcodes.py) that every command follows. `check`'s codes are tested in
test_budgets.py, 130 after a signal in tests/e2e/test_interrupts.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest

from bench import exitcodes
from bench.experiments import registered
from bench.experiments.limits import SettingError, parse_duration, settings_with

SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-smoke"


def seambench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*SEAMBENCH, *args], capture_output=True, text=True, timeout=timeout)


def in_process(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
               *args: str) -> subprocess.CompletedProcess:
    """``bench.cli.main`` with ``args``, here (no interpreter to start): what a shell sees."""
    from bench.cli import main
    monkeypatch.setattr(sys, "argv", ["seambench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, exited.value.code, out, err)


def test_help_is_h_too_and_ends_with_the_exit_code_table(capsys, monkeypatch):
    for flag in ("-h", "--help"):
        done = in_process(capsys, monkeypatch, flag)
        assert done.returncode == exitcodes.OK
        for code, meaning in exitcodes.TABLE:
            assert f"{code:>3}  {meaning}" in done.stdout
    load_help = in_process(capsys, monkeypatch, "load", "-h")
    assert load_help.returncode == 0 and "--json-body" in load_help.stdout


def test_version_is_the_installed_distribution(capsys, monkeypatch):
    done = in_process(capsys, monkeypatch, "--version")
    assert done.returncode == 0 and metadata.version("seambench") in done.stdout


def test_list_names_every_experiment_topology_and_plan(capsys, monkeypatch):
    done = in_process(capsys, monkeypatch, "list", "--json")
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    assert set(doc["experiments"]) == set(registered())
    journey = doc["experiments"]["journey"]["settings"]
    assert journey["rates"]["quick"] == [60, 120] and "duration_s" in journey
    assert {"monolith", "microservices", "monolith-pg"} <= set(doc["topologies"])
    assert doc["topologies"]["monolith-pg"]["extras"] == ["postgres"]
    assert "crash-billing" in doc["fault_plans"]
    text = in_process(capsys, monkeypatch, "list").stdout
    assert "journey (default)" in text and "needs seambench[postgres]" in text


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1.5h", 5400),
                                          ("250ms", 0.25), ("7", 7), (".5s", 0.5)])
def test_durations_read_as_locust_and_wrk2_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "-1s", "nan", "1m30s", "s"])
def test_a_duration_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_duration_setting_takes_units_and_refuses_nonsense():
    from bench.experiments import get
    base = get("journey").settings("smoke")
    assert settings_with("journey", base, {"duration_s": "2m"}).duration_s == 120
    with pytest.raises(SettingError, match="journey.duration_s: '2q' is not a duration"):
        settings_with("journey", base, {"duration_s": "2q"})
    with pytest.raises(SettingError, match="from 0.1 to 86400"):
        settings_with("journey", base, {"duration_s": "25h"})


@pytest.mark.parametrize("args,needle", [
    (["load", "https://127.0.0.1:9/", "--rate", "1", "--duration", "1s"], "https is not supported"),
    (["load", "ftp://127.0.0.1:9/", "--rate", "1", "--duration", "1s"], "not an http:// URL"),
    (["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "3x"], "not a duration"),
    (["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "1", "--header", "X-A"],
     "is not 'Name: value'"),
    (["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "1", "--header", "X A: 1"],
     "is not 'Name: value'"),
    (["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "1", "--json-body", "{"],
     "not JSON"),
    (["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "1", "--body", "x",
      "--json-body", "1"], "not both"),
    (["run", "--profile", "nope"], "'nope' is not one of"),
    (["run", "--topology", "nope"], "no topology 'nope'"),
    (["up", "--topology", "nope"], "no topology 'nope'"),
    (["calibrate", "--duration", "0"], "--duration"),
    (["report", "/nonexistent"], "does not exist"),
    (["compare", str(FIXTURE)], "give two runs"),
    (["chaos", "--plan", "nope"], "nope"),
    (["list", "--bogus"], "No such option"),
    (["run", "--otlp-url", "http://127.0.0.1:4318/v1/traces"], "needs --trace"),
    (["run", "--trace-ratio", "0.5"], "needs --trace"),
    (["run", "--trace", "--trace-ratio", "0"], "--trace-ratio"),
    (["run", "--trace", "--otlp-url", "grpc://127.0.0.1:4317"], "not an http(s):// URL"),
    (["up", "--otlp-url", "http://127.0.0.1:4318/v1/traces"], "needs --trace DIR"),
])
def test_unusable_input_is_one_line_and_exit_2(capsys, monkeypatch, args, needle):
    done = in_process(capsys, monkeypatch, *args)
    assert done.returncode == exitcodes.UNUSABLE, done.stderr
    assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


class Recorder(BaseHTTPRequestHandler):
    """Answers every request (500 when the server's ``fail`` is set) and keeps what came."""
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle on, the body waited for the
    # client's delayed ACK (40 ms) on a kept-alive connection, and the step was "not steady".
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.command, dict(self.headers), self.rfile.read(length)))
        status = 500 if self.server.fail else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_PUT = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen, server.fail, server.daemon_threads = [], False, True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_load_sends_the_headers_and_body_it_was_given(recorder):
    url = f"http://127.0.0.1:{recorder.server_port}/billing/topup"
    done = seambench("load", url, "--rate", "40", "--duration", "1s", "--warmup", "200ms",
                     "--method", "POST", "--header", "Authorization: Bearer t0k",
                     "--header", "X-Trace:  7 ", "--json-body", '{"amount_cents": 100}',
                     "--json")
    assert done.returncode == exitcodes.OK, done.stderr
    assert json.loads(done.stdout)["errors"] == 0 and len(recorder.seen) >= 30
    for method, headers, body in recorder.seen:
        assert method == "POST" and headers["Authorization"] == "Bearer t0k"
        assert headers["X-Trace"] == "7" and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"amount_cents": 100}
    raw = seambench("load", url, "--rate", "20", "--duration", "0.5", "--warmup", "0",
                    "--method", "PUT", "--body", "plain words")
    assert raw.returncode == exitcodes.OK and recorder.seen[-1][2] == b"plain words"


def test_an_invalid_load_is_nothing_valid_to_judge(recorder):
    recorder.fail = True  # every answer a 500: the error rate makes the run invalid
    done = seambench("load", f"http://127.0.0.1:{recorder.server_port}/", "--rate", "20",
                     "--duration", "0.5", "--warmup", "0")
    assert done.returncode == exitcodes.NOTHING_VALID, done.stderr
    assert "INVALID" in done.stderr


def test_report_and_compare_of_readable_runs_exit_0(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    done = seambench("report", str(run_dir))
    assert done.returncode == exitcodes.OK and done.stdout.strip().endswith("report.html")
    assert seambench("compare", str(run_dir), str(FIXTURE)).returncode == exitcodes.OK


def test_a_shop_that_cannot_start_is_the_tool_failing(tmp_path):
    """A topology whose database server does not answer: `up` and `run` start nothing,
    say why in one line, and exit 4."""
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\ngateway = false\n[process.app]\n'
                      'components = ["auth", "billing", "search", "notify"]\n'
                      '[database]\nauth = "postgresql://postgres@127.0.0.1:9/seambench_{run}_x"\n'
                      'billing = "shop"\nnotify = "shop"\nsearch = "shop"\n')
    up = seambench("up", "--topology", str(broken), "--kdf-log2", "4", timeout=180)
    assert up.returncode == exitcodes.TOOL_FAILED, up.stderr[-2000:]
    run = seambench("run", "--profile", "smoke", "--topology", str(broken), "--experiment",
                    "hops", "--results", str(tmp_path / "results"), "--kdf-log2", "4",
                    timeout=180)
    assert run.returncode == exitcodes.TOOL_FAILED, run.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    assert run.stdout.strip().splitlines()[-1] == str(run_dir)  # the last line, for scripts
    assert json.loads((run_dir / "manifest.json").read_text())["complete"] is False
