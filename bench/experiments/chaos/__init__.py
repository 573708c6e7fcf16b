"""The chaos experiment: faults applied to a supervised placement while keyed writes and reads run, and
the oracle's verdict on what was lost or duplicated.

Kept empty of imports: the scenario module of this package is loaded by Locust in the
generator process, which must not import the harness."""
