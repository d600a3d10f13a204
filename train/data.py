"""Flows -> padded (tokens, iat bins) training batches, bucketed by length so short flows don't pay for long ones."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..runtime.flows import Flow
from ..runtime.tokenizer import PAD, Tokenizer

IGNORE = -100  # cross_entropy's ignore_index


def encode_all(flows: list[Flow], tok: Tokenizer) -> list[tuple[np.ndarray, np.ndarray]]:
    return [tok.encode(f) for f in flows]


def pad(seqs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(s[0]) for s in seqs)
    toks = np.full((len(seqs), t), PAD, dtype=np.int64)
    bins = np.zeros((len(seqs), t), dtype=np.int64)
    for i, (a, b) in enumerate(seqs):
        toks[i, : len(a)], bins[i, : len(b)] = a, b
    return torch.from_numpy(toks), torch.from_numpy(bins)


def batches(
    seqs: list[tuple[np.ndarray, np.ndarray]],
    batch_size: int,
    rng: np.random.Generator | None = None,
    weights: np.ndarray | None = None,
    n_draws: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of batches: in order, shuffled (rng), or `n_draws` (default: as many as sequences) drawn with
    replacement by `weights` (rng and weights).

    Within windows of 32 batches, sequences of similar length go together.
    """
    n = len(seqs)
    if rng is None:
        order = np.arange(n)
    elif weights is None:
        order = rng.permutation(n)
    else:
        order = rng.choice(n, n_draws or n, p=weights / weights.sum())
    window = 32 * batch_size
    groups = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: len(seqs[i][0]))
        groups += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    for g in groups:
        yield pad([seqs[i] for i in g])


def targets(toks: torch.Tensor, bins: torch.Tensor, tok: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token targets (PAD ignored) and next-iat targets (only where the next token is a packet)."""
    nxt, nbin = toks[:, 1:], bins[:, 1:]
    return nxt.masked_fill(nxt == PAD, IGNORE), nbin.masked_fill(~tok.is_packet(nxt), IGNORE)
