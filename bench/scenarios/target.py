"""Any HTTP endpoint at a fixed open-loop rate: what ``seambench load URL`` runs (like wrk2).

Options (``LoadPlan.options``): ``path`` (default "/") and ``method`` (default "GET").
"""
from __future__ import annotations

from bench.scenarios.openloop import OpenLoopUser, Send


class TargetUser(OpenLoopUser):
    def next_request(self) -> tuple[str, Send]:
        path = self.plan.options.get("path", "/")
        method = self.plan.options.get("method", "GET")
        return method, lambda context: self.client.request(method, path, name=method,
                                                           context=context)
