"""The exit codes of every seambench command: one table, printed by ``seambench --help``
and quoted in the README, so a script reads 1 the same way from ``run``, ``check`` or
``load``."""
from __future__ import annotations

OK = 0
FINDING = 1  # measured, and the system was found wanting: a budget breached, the oracle's problems
UNUSABLE = 2  # unusable input: an argument, topology, budgets file or run directory
NOTHING_VALID = 3  # nothing valid to judge: a headline on no valid step, an invalid `load`, a
#                    figure still noisy or missing under `check --strict`
TOOL_FAILED = 4  # the tool failed: a process died, the generator or the report failed
INTERRUPTED = 130  # Ctrl-C or SIGTERM; what was measured is kept, marked incomplete

TABLE = ((OK, "ok"),
         (FINDING, "a finding: a budget breached (check), money or events lost under "
                   "faults (run)"),
         (UNUSABLE, "unusable input: a bad argument, topology, budgets file or run directory"),
         (NOTHING_VALID, "nothing valid to judge: a headline on no valid step (run), an invalid "
                         "load (load), a figure noisy or missing (check --strict)"),
         (TOOL_FAILED, "the tool failed: a process died, the generator or the report failed"),
         (INTERRUPTED, "interrupted (Ctrl-C, SIGTERM): partial results kept, marked incomplete"))


def help_text() -> str:
    """The table as the epilog of ``seambench --help`` (``\\b``: click keeps its lines)."""
    return "Exit codes, every command:\n\n\b\n" + "\n".join(
        f"{code:>3}  {meaning}" for code, meaning in TABLE)
