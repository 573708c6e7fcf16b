"""The load generator: open-loop Locust processes, their plans, recorders and the HTTP client
they send with. Locust is imported only by the scenario files (run in generator processes)."""
