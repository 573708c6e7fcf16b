"""Chain's implementation: a link that names its component and hands on to the next."""
from __future__ import annotations

from collections.abc import Callable

from shop.chain.api import CHAIN_ORDER, MAX_HOPS, Link
from shop.errors import InvalidValue


def next_component(component: str) -> str:
    """The component after ``component`` in the ring (notify is followed by auth)."""
    return CHAIN_ORDER[(CHAIN_ORDER.index(component) + 1) % len(CHAIN_ORDER)]


def chain_path(k: int) -> list[str]:
    """The components ``GET /chain?k=`` visits, in order: k + 1 of them from the ring's
    start (what ``forward(k)`` on the first link answers). Raises InvalidValue for a k
    outside 0..MAX_HOPS."""
    check_hops(k)
    path = [CHAIN_ORDER[0]]
    for _ in range(k):
        path.append(next_component(path[-1]))
    return path


def check_hops(remaining: int) -> None:
    if not 0 <= remaining <= MAX_HOPS:
        raise InvalidValue(f"the number of hops must be between 0 and {MAX_HOPS}")


class LocalLink:
    """The local implementation of ``Link`` for one component.

    ``resolve`` gives the link of another component: a ``LocalLink`` when this process hosts
    it, a client stub when another one does. It is called when a call is forwarded, not
    when the link is built, so a process can build the links of a ring that refers back to
    itself.
    """

    def __init__(self, component: str, resolve: Callable[[str], Link]) -> None:
        if component not in CHAIN_ORDER:
            raise ValueError(f"unknown component {component!r}; known: {', '.join(CHAIN_ORDER)}")
        self.component = component
        self._next = next_component(component)
        self._resolve = resolve

    def forward(self, remaining: int) -> list[str]:
        check_hops(remaining)
        if remaining == 0:
            return [self.component]
        return [self.component, *self._resolve(self._next).forward(remaining - 1)]
