"""The fan-out experiment: scatter-gather over n leaves against the order-statistics prediction,
with an injected tail and hedged requests.

Kept empty of imports: the scenario module of this package is loaded by Locust in the
generator process, which must not import the harness."""
