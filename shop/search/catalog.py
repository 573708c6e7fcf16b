"""The deterministic product catalog: the same seed gives the same products everywhere."""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

ADJECTIVES = ("compact", "rugged", "silent", "vintage", "smart", "portable", "classic", "modular",
              "wireless", "ergonomic", "heavy", "light", "solar", "folding", "premium", "basic")
MATERIALS = ("oak", "steel", "bamboo", "leather", "ceramic", "glass", "carbon", "wool", "copper",
             "granite", "linen", "titanium", "cork", "marble")
NOUNS = ("lamp", "kettle", "backpack", "chair", "desk", "speaker", "bottle", "jacket", "knife",
         "clock", "tent", "bicycle", "camera", "notebook", "blender", "headphones", "mug", "rug",
         "telescope", "keyboard", "umbrella", "wallet", "drone", "grill")
COLOURS = ("red", "blue", "green", "black", "white", "amber", "teal", "grey", "olive", "navy")
USES = ("camping", "office", "kitchen", "travel", "garden", "studio", "workshop", "gym", "reading",
        "gaming", "picnic", "winter")


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    description: str
    price_cents: int


@cache
def products(count: int, seed: int) -> tuple[Product, ...]:
    """``generate(count, seed)`` as a tuple, made once per process: every leaf's partition
    is cut from the same catalog, and a fleet has dozens of leaves."""
    return tuple(generate(count, seed))


def generate(count: int, seed: int) -> Iterator[Product]:
    """``count`` products, SKU ``SKU-000001`` upwards, from a private ``random.Random(seed)``."""
    rng = random.Random(seed)
    for i in range(1, count + 1):
        noun = rng.choice(NOUNS)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {noun}"
        description = (f"A {rng.choice(COLOURS)} {noun} for {rng.choice(USES)} and "
                       f"{rng.choice(USES)}, made of {rng.choice(MATERIALS)} "
                       f"with a {rng.choice(ADJECTIVES)} finish.")
        yield Product(f"SKU-{i:06d}", name, description, rng.randrange(99, 100_000))
