"""Any HTTP endpoint at a fixed open-loop rate: what ``seambench load URL`` runs (like wrk2).

Options (``LoadPlan.options``): ``path`` (default "/") and ``method`` (default "GET").
"""
from __future__ import annotations

from bench.load.openloop import OpenLoopUser, Send


class TargetUser(OpenLoopUser):
    def prepare(self) -> None:
        method = self.plan.options.get("method", "GET")
        # every arrival is the same request: its bytes are built once
        self._request = self.client.prepare(method, self.plan.options.get("path", "/"), name=method)

    def next_request(self) -> tuple[str, Send]:
        return self._request.name, self._request
