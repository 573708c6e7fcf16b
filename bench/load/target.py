"""Any HTTP endpoint at a fixed open-loop rate: what ``seambench load URL`` runs (like wrk2).

Options (``LoadPlan.options``): ``path`` (default "/"), ``method`` (default "GET"),
``headers`` (a dict), ``body`` (text sent as given) or ``json`` (a value sent as JSON).
"""
from __future__ import annotations

from bench.load.openloop import OpenLoopUser, Send


class TargetUser(OpenLoopUser):
    def prepare(self) -> None:
        method = self.plan.options.get("method", "GET")
        # every arrival is the same request: its bytes are built once
        options = self.plan.options
        self._request = self.client.prepare(method, options.get("path", "/"), name=method,
                                            headers=options.get("headers") or None,
                                            json=options.get("json"), data=options.get("body"))

    def next_request(self) -> tuple[str, Send]:
        return self._request.name, self._request
