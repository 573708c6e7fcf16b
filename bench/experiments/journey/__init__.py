"""The journey experiment: the user mix at rising open-loop rates; throughput at a p99 objective,
paired placement ratios, CPU and memory per request, notification lag.

Kept empty of imports: the scenario module of this package is loaded by Locust in the
generator process, which must not import the harness."""
