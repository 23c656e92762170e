"""Readable run names (``brave-heron-412``) drawn from the operating system's entropy.

MLflow draws its generated names from the global :mod:`random` state, which training seeds
first, so every run with the same seed got the same name. Ours come from an independent
generator: two runs with one seed still get different names.
"""

from __future__ import annotations

import random

_ADJECTIVES = (
    "amber", "bold", "brave", "bright", "calm", "clever", "crisp", "daring", "eager", "fair", "fleet", "gentle",
    "golden", "grand", "happy", "hardy", "keen", "kind", "lively", "loyal", "lucid", "merry", "mighty", "nimble",
    "noble", "polite", "proud", "quick", "quiet", "rapid", "sharp", "shiny", "silent", "silver", "smart", "steady",
    "stellar", "sunny", "swift", "tidy", "vivid", "warm", "wise", "witty", "zesty",
)
_NOUNS = (
    "albatross", "antelope", "badger", "bat", "bison", "crane", "dolphin", "eagle", "falcon", "ferret", "finch",
    "fox", "gazelle", "gull", "hare", "hawk", "heron", "ibis", "jay", "kestrel", "kite", "lark", "lynx", "marten",
    "mink", "newt", "osprey", "otter", "owl", "panda", "petrel", "puffin", "raven", "robin", "seal", "shrike",
    "sparrow", "stork", "swan", "tern", "trout", "vole", "wolf", "wren", "yak",
)

# SystemRandom reads os.urandom: no state of its own for anyone's seed to fix.
_RNG = random.SystemRandom()


def generate_run_name() -> str:
    """An ``adjective-noun-NNN`` name, independent of any seeded random state (45 × 45 × 900 choices)."""
    return f"{_RNG.choice(_ADJECTIVES)}-{_RNG.choice(_NOUNS)}-{_RNG.randint(100, 999)}"
