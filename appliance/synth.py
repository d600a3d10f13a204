"""Synthetic flows for the API: a class mix made exact, and the resumable stream's batches.

Stream rule (docs/appliance.md): flow number `seq` lies in batch `seq // batch` at position `seq % batch`. Batch `i`
of a stream with seed `s` draws its labels from the mix with numpy's Generator(SeedSequence([s, i, 0])) and generates
its flows with runtime/sampler.py `generate` seeded by SeedSequence([s, i, 1]); so a batch depends only on (seed,
mix, batch size, sampling, length, i), and a client resuming from `seq` gets exactly the flows it would have got.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime.flows import Flow
from ..runtime.sampler import Sampling, generate
from ..runtime.tokenizer import Tokenizer


def apportion(n: int, mix: dict[str, float]) -> dict[str, int]:
    """`n` split over the classes of `mix` in proportion to its weights, by largest remainder (sums to n exactly)."""
    total = sum(mix.values())
    exact = {c: n * w / total for c, w in mix.items()}
    counts = {c: int(v) for c, v in exact.items()}
    left = n - sum(counts.values())
    for c in sorted(exact, key=lambda c: counts[c] - exact[c])[:left]:
        counts[c] += 1
    return counts


def generate_flows(engine: Any, tok: Tokenizer, counts: dict[str, int], sampling: Sampling, batch_size: int,
                   seed: int, length: int | None = None) -> list[Flow]:
    flows: list[Flow] = []
    for batch in generate(engine, tok, {c: n for c, n in counts.items() if n}, sampling, batch_size, seed, length):
        flows += batch
    return flows


def _seed(seed: int, index: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1)[0])


def stream_batch(engine: Any, tok: Tokenizer, mix: dict[str, float], sampling: Sampling, seed: int, index: int,
                 size: int, length: int | None = None) -> list[Flow]:
    """Batch `index` of a stream (module docstring): `size` flows whose classes follow the mix in a random order."""
    classes = list(mix)
    weights = np.array([mix[c] for c in classes], dtype=float)
    picks = np.random.default_rng(_seed(seed, index, 0)).choice(len(classes), size=size, p=weights / weights.sum())
    counts = {c: int((picks == i).sum()) for i, c in enumerate(classes)}
    made = generate_flows(engine, tok, counts, sampling, size, _seed(seed, index, 1), length)
    # `generate` returns the flows grouped by class; deal them back into the drawn order
    by_class: dict[str, list[Flow]] = {c: [] for c in classes}
    for f in made:
        by_class[f.label].append(f)
    nxt = {c: iter(fs) for c, fs in by_class.items()}
    return [next(nxt[classes[i]]) for i in picks]
