"""The hop-cost experiment: a chain of k component calls against the raw TCP and HTTP floors
measured in the same run.

Kept empty of imports: the scenario module of this package is loaded by Locust in the
generator process, which must not import the harness."""
