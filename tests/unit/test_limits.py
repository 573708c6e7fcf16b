"""Every absurd value, from any command, option or file, is one line and exit 2: nothing starts.

The cases are those an adversarial probe found crashing or starting endless work (issue 20):
numbers that overflow, NaN, a scalar where a list was meant, a negative rate, a step of
30,000 years, a billion users, a file that is not UTF-8, a method with a space.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

import bench.cli
from bench.cli import main
from bench.experiments import get, registered
from bench.experiments.limits import SettingError, settings_with

BAD_UTF8 = b'name = "caf\xe9"\n'  # Latin-1, as an old editor might save it


@pytest.fixture
def nothing_starts(monkeypatch):
    """Fail the test if a command gets as far as starting a shop or a run."""
    def started(*args, **kwargs):
        raise AssertionError("an absurd value started real work")
    monkeypatch.setattr(bench.cli.lifecycle, "execute", started)
    monkeypatch.setattr(bench.cli, "launch", started)
    monkeypatch.setattr(bench.cli, "run_load", started)


@pytest.fixture
def latin1(tmp_path) -> Path:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BAD_UTF8)
    return path


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["seambench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


SET_CASES = [
    ("run", "fanout.ns=1e400"), ("run", "journey.rates=nan"), ("run", "journey.rates=NaN"),
    ("run", "journey.rates=1e308"), ("run", "journey.rates=-5"),
    ("run", "journey.duration_s=1e12"), ("run", "fanout.ns=2.5"),
    ("run", 'fanout.tail={"base_ms": 1, "slow_p": Infinity}'), ("run", "hops.ks=[]"),
    ("chaos", "chaos.rate=1e308"), ("chaos", "chaos.users=999999999"),
    ("chaos", "chaos.duration_s=1e12"), ("chaos", "chaos.warmup_s=-1"),
]


@pytest.mark.parametrize("command,assignment", SET_CASES)
def test_an_absurd_setting_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, nothing_starts,
                                                  command, assignment):
    experiment = assignment.partition(".")[0]
    args = [command, "--set", assignment, "--results", str(tmp_path)]
    if command == "run":
        args += ["--experiment", experiment]
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and line.startswith("seambench"), err
    assert assignment.partition("=")[0] in line  # it names the setting


@pytest.mark.parametrize("args", [
    ["up", "--hop-delay-ms", "nan"], ["run", "--hop-delay-ms", "nan"],
    ["chaos", "--hop-delay-ms", "NaN"], ["run", "--edge", "bogus"],
    ["load", "http://127.0.0.1:9/", "--rate", "nan", "--duration", "1"],
    ["load", "http://127.0.0.1:9/", "--rate", "inf", "--duration", "1"],
    ["load", "http://127.0.0.1:9/", "--rate", "1e308", "--duration", "1"],
    ["load", "http://127.0.0.1:9/", "--rate", "10", "--duration", "1e12"],
    ["load", "http://127.0.0.1:9/", "--rate", "10", "--duration", "1", "--method", "GE T"],
])
def test_an_absurd_option_is_one_line_and_exit_2(monkeypatch, capsys, nothing_starts, args):
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert "\n" not in err.strip() and err.startswith("seambench"), err


@pytest.mark.parametrize("command", ["up --topology", "run --topology", "chaos --plan",
                                     "check tests/fixtures/run-smoke --budgets"])
def test_a_file_that_is_not_utf8_is_one_line_and_exit_2(monkeypatch, capsys, nothing_starts,
                                                        latin1, command):
    code, err = run_cli(monkeypatch, capsys, *command.split(), str(latin1))
    assert code == 2
    line = err.strip()
    assert "\n" not in line and "not UTF-8" in line and str(latin1) in line, err


def test_a_topology_edge_table_with_infinity_is_refused(monkeypatch, capsys, tmp_path,
                                                        nothing_starts):
    path = tmp_path / "t.toml"
    path.write_text('name = "t"\n[process.app]\ncomponents = ["auth", "billing", "search", '
                    '"notify"]\n[edge."*->*"]\nretries = inf\n')
    code, err = run_cli(monkeypatch, capsys, "up", "--topology", str(path))
    assert code == 2 and "retries" in err and "\n" not in err.strip()


@pytest.mark.parametrize("name", registered())
@pytest.mark.parametrize("profile", ["quick", "full", "smoke"])
def test_every_profile_default_is_within_the_limits(name, profile):
    """The limits refuse absurd values, never the settings the project ships."""
    base = get(name).settings(profile)
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    assert settings_with(name, base, values) == base


def test_one_number_for_a_list_setting_is_a_list_of_one():
    base = get("journey").settings("quick")
    assert settings_with("journey", base, {"rates": 20}).rates == (20,)
    assert settings_with("journey", base, {"rates": [20, 40.5]}).rates == (20, 40.5)


def test_a_whole_number_written_as_a_float_is_taken():
    base = get("fanout").settings("quick")
    assert settings_with("fanout", base, {"ns": [1.0, 4]}).ns == (1, 4)
    with pytest.raises(SettingError, match="fanout.ns: must be a whole number"):
        settings_with("fanout", base, {"ns": [1.5]})
