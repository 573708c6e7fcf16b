"""What a placement nobody has built would cost: ``seambench predict`` (docs/predict.md).

Not an experiment: it prices topologies from what two experiments measured in one run, the
hops experiment (one call's cost, the gateway's, CPU per hop) and the journey (the monolith's
latency per request kind, and the call graph its probe found: journey/callgraph.py).
``inputs`` reads them from the run; ``model`` is the arithmetic (no I/O); ``command`` the CLI."""
