"""Chain: a pass-through call around the components, to price one component call.

A chain of ``k`` hops starts at the first component of ``CHAIN_ORDER`` and follows the
ring auth -> billing -> search -> notify -> auth. Each link does no work of its own: it
names itself and forwards. Whether a hop is a function call or an HTTP call is the
placement's business, so the same ``k`` costs k function calls in the monolith and up to
k network round trips split.
"""
from __future__ import annotations

from typing import Protocol

CHAIN_ORDER = ("auth", "billing", "search", "notify")  # the ring; the chain starts at auth
MAX_HOPS = 4  # one full turn of the ring, back to where it started


class Link(Protocol):
    def forward(self, remaining: int) -> list[str]:
        """The components visited from this one on: this link's component, then, when
        ``remaining`` > 0, the path of ``forward(remaining - 1)`` on the next component
        of the ring. ``remaining`` must be 0..MAX_HOPS; otherwise raises InvalidValue."""
