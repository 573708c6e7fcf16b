"""The toy's locustfile: /healthz and /readyz alternately, at the plan's open-loop rate."""
from __future__ import annotations

from bench.load.openloop import OpenLoopUser, Send


class ToyUser(OpenLoopUser):
    def prepare(self) -> None:
        self._requests = [self.client.prepare("GET", "/healthz", name="health"),
                          self.client.prepare("GET", "/readyz", name="ready")]
        self._sent = 0

    def next_request(self) -> tuple[str, Send]:
        self._sent += 1
        request = self._requests[self._sent % 2]
        return request.name, request
