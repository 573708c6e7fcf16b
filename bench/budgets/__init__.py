"""Latency budgets for CI: ``seambench check RUN --budgets FILE [--baseline RUN]``.

* ``spec``      the budgets file (TOML): selectors and limits, errors with line and key
* ``metrics``   a budget's figure read out of a run: value, 95% interval, per-trial values
* ``verdicts``  pass / breach / noisy / missing from the interval, and the trials to decide
* ``evaluate``  refusals (incomplete, invalid steps, environment) and one result per budget
* ``output``    the table, Markdown for $GITHUB_STEP_SUMMARY, JUnit XML
* ``command``   the command's glue and exit codes (0 no breach, 1 breach, 2 unusable input)
"""
