"""Batched flow sampling over any Engine (runtime/engine.py): in numpy, or inside the engine's graph.

Every sequence of a batch starts with a one-token prompt (its class token), so all rows advance in lockstep and no
padding mask is needed; rows that finished are dropped from the batch (and from the engine's state) as they
accumulate, since flow lengths are heavy-tailed and a batch would otherwise run at full width until its longest flow
ends.

Randomness is one uniform per flow, position and stream (packet, inter-arrival bin, and a factorised head's exact
length), dealt here up front (`deal`: by default each class's flows in a batch share one shifted Sobol' set) and
turned into an id by inverse-CDF lookup. An engine that samples inside its own graph (`engine.samples`: the ONNX
bundles, see export/onnx.py `add_sampler`) receives the same uniforms, so for the same seed and the same logits it
picks the same ids as `sample` below, and at batch 1024 the logits never leave the engine.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .engine import Engine
from .flows import Flow
from .knobs import check, knob
from .tokenizer import EOS, PAD, Tokenizer


@dataclass(frozen=True)
class Sampling:
    temperature: float = knob(1.0, "Sampling temperature (1 = the model's distribution).", lo=0, lo_open=True)
    top_k: int = knob(0, "Keep the k most likely ids (0 = off).", lo=0)
    top_p: float = knob(1.0, "Keep the smallest set of ids whose mass reaches p (1 = off).", lo=0, hi=1, lo_open=True)
    # A few dozen independent draws of a class land unevenly on its modes (a resample of the real flows loses F1
    # that way, docs/benchmarks.md); a Sobol' set keeps each flow's own distribution and spreads the set evenly.
    stratified: bool = knob(True, "Deal the uniforms of each class's flows in a batch as one Sobol' point set "
                                  "instead of independently.")
    # Scores that hold what a class shares with every other (a big class's diffuse flows) train a classifier that
    # gives the small classes' test flows to the big ones; guidance moves each flow towards what marks its class.
    guidance: float = knob(0.0, "Classifier-free guidance g: scores = class + g x (class - any class), for a model "
                                "trained with --class-dropout (0 = off); an --other-flows model guides away "
                                "from the other classes' traffic instead, which measured worse.", lo=0)

    def __post_init__(self) -> None:
        check(self)


def class_counts(classes: Iterable[str], n_per_class: int | None = None, like: Iterable[Flow] | None = None,
                 scale: float = 1.0) -> dict[str, int]:
    """How many flows of each class to generate: `n_per_class` of each, or `scale` times the count of each class in
    `like` (e.g. the real training split; classes absent from it get none). The one rule every command uses."""
    classes = list(classes)
    if (n_per_class is None) == (like is None):
        raise ValueError("give either a count per class or flows whose class counts to reproduce")
    if like is None:
        return {c: n_per_class for c in classes}
    have = Counter(f.label for f in like)
    return {c: round(have[c] * scale) for c in classes if have[c] and round(have[c] * scale)}


def spread(classes: Iterable[str], n: int) -> dict[str, int]:
    """n flows spread over the classes round-robin (the benchmarks' fixed totals)."""
    classes = list(classes)
    return {c: n // len(classes) + (i < n % len(classes)) for i, c in enumerate(classes) if i < n}


def sample(logits: np.ndarray, s: Sampling, u: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """One id per row from (batch, n) scores plus an optional (n,) bias (-inf = forbidden), given one uniform in [0, 1)
    per row: the first id whose cumulative probability exceeds u (so an id of probability 0 is never picked)."""
    # float32 and in place on one copy: at batch 1024 this function costs a third of a model step
    z = np.array(logits, dtype=np.float32) if bias is None else np.add(logits, bias, dtype=np.float32)
    if s.temperature != 1.0:
        z /= s.temperature
    if 0 < s.top_k < z.shape[1]:
        kth = np.partition(z, -s.top_k, axis=1)[:, -s.top_k][:, None]
        z[z < kth] = -np.inf
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z, out=z)
    if s.top_p < 1.0:
        p /= p.sum(axis=1, keepdims=True)
        order = np.argsort(-p, axis=1)
        sorted_p = np.take_along_axis(p, order, axis=1)
        # keep the smallest prefix whose mass reaches top_p (the first id always survives)
        drop = np.cumsum(sorted_p, axis=1) - sorted_p >= s.top_p
        np.put_along_axis(p, order, np.where(drop, 0.0, sorted_p), axis=1)
    # inverse CDF on the unnormalised CDF, vectorised over the batch
    cdf = np.cumsum(p, axis=1, out=p)
    return np.minimum((cdf <= u.reshape(-1, 1) * cdf[:, -1:]).sum(axis=1), p.shape[1] - 1)


SOBOL_POINTS, SOBOL_DIMS, SOBOL_BITS = 1024, 1024, 30  # a power of two of points: a Sobol' set's balanced size
ONE_BELOW = np.nextafter(np.float32(1), np.float32(0))


def deal(labels: list[str], steps: int, streams: int, rng: np.random.Generator, stratified: bool) -> np.ndarray:
    """(len(labels), steps, streams) uniforms in [0, 1): independent, or with `stratified` the rows of each label one
    Sobol' point set over the first (steps x streams) dimensions, position by position, so that the draws which split
    a class into its modes land evenly. A random digital shift per set makes every row on its own uniform."""
    u = rng.random((len(labels), steps, streams), dtype=np.float32)
    if not stratified:
        return u
    flat = u.reshape(len(labels), -1)
    dims = min(flat.shape[1], SOBOL_DIMS)  # later dimensions stay independent
    base = sobol_base()[:, :dims]
    rows = np.unique(np.array(labels), return_inverse=True)[1]
    for k in range(rows.max() + 1):
        idx = np.flatnonzero(rows == k)
        for chunk in np.array_split(idx, -(-len(idx) // SOBOL_POINTS)):
            if len(chunk) > 1:  # one shifted point is one independent draw
                shift = rng.integers(0, 2**SOBOL_BITS, dims, dtype=np.uint32)
                x = ((base[: len(chunk)] ^ shift) + rng.random((len(chunk), dims))) * 2.0**-SOBOL_BITS
                flat[chunk, :dims] = np.minimum(x, ONE_BELOW)  # float32 must not round up to 1
    return u


@functools.cache
def sobol_base() -> np.ndarray:
    """(SOBOL_POINTS, SOBOL_DIMS) Sobol' points as SOBOL_BITS-bit integers (4 MB), scrambled once with a fixed seed:
    scrambling fixes the poor low-dimensional projections of the raw sequence; the randomness of a draw is the shift
    `deal` adds. The scramble is scipy's, so a seed's flows are the same wherever scipy's Sobol' is."""
    from scipy.stats import qmc  # here: scipy.stats is slow to import, and a CLI that never samples needs none

    pts = qmc.Sobol(SOBOL_DIMS, scramble=True, bits=SOBOL_BITS, seed=0).random(SOBOL_POINTS)
    base = (pts * 2.0**SOBOL_BITS).astype(np.uint32)
    base.setflags(write=False)  # cached and shared by every call
    return base


def check_guidance(tok: Tokenizer, s: Sampling) -> None:
    """Guidance needs scores of flows of any class, which only a model trained with the class hidden has."""
    if s.guidance and not tok.any_class:
        raise ValueError(f"guidance {s.guidance:g}: this model was trained without --class-dropout or --other-flows, "
                         "so it has no scores for flows of any class to guide against (use guidance 0)")


def generate_batch(
    engine: Engine, tok: Tokenizer, labels: list[str], s: Sampling, rng: np.random.Generator, length: int | None = None
) -> list[Flow]:
    """Sample one flow per entry of `labels` in a single batch; `length` forces exactly that many packets."""
    check_guidance(tok, s)
    b = len(labels)
    n = min(length or tok.max_packets, tok.max_packets) + tok.length_token  # steps
    g = s.guidance
    # with guidance, rows b .. 2b - 1 are the same flows without their class (<PAD>, as class dropout trained it)
    tokens = np.array([[tok.class_token(c)] for c in labels] + [[PAD]] * (b if g else 0), dtype=np.int64)
    iats = np.zeros((len(tokens), 1), dtype=np.int64)
    # A flow may end (<EOS>) or continue with a packet; <PAD>, class and length tokens are never generated there.
    allowed = np.zeros(tok.vocab_size, dtype=bool)
    allowed[EOS] = True
    allowed[tok.packet_base : tok.packet_end] = True
    ban = np.where(allowed, 0.0, -np.inf).astype(np.float32)
    if length:
        ban[EOS] = -np.inf
    # With a length token, the first step draws the flow's length bucket (the one holding `length`, if forced);
    # without, the first packet, never <EOS>: every training flow has one.
    first = np.full(tok.vocab_size, -np.inf, dtype=np.float32)
    if tok.length_token:
        first[[tok.length_id(length)] if length else tok.length_ids()] = 0.0
    else:
        first[tok.packet_base : tok.packet_end] = 0.0
    out_t = np.full((b, n), EOS, dtype=np.int64)
    out_i = np.zeros((b, n), dtype=np.int64)
    live = np.arange(b)  # output rows still generating, in batch order
    done = np.zeros(b, dtype=bool)  # per batch row
    state = None
    in_graph = engine.samples and s.top_k == 0 and s.top_p == 1.0 and not g
    # Each flow's uniforms are fixed by its row and position up front, so a flow that ends earlier in one engine than
    # in another (and so changes which rows are still running) does not re-deal the randomness of every other flow.
    # A factorised head's exact lengths are drawn after the model's buckets: one more uniform per position.
    dealt = deal(labels, n, 3 if tok.head is not None else 2, rng, s.stratified)  # (b, n, streams)
    uniforms, lengths_u = dealt[:, :, :2].transpose(1, 0, 2), dealt[:, :, 2] if tok.head is not None else None
    for pos in range(n):
        u = uniforms[pos, live]
        bias = first if pos == 0 else ban
        if in_graph:
            nxt, nbin, state = engine.sample_step(tokens, iats, state, u, s.temperature, bias)
        else:
            logits, iat_logits, state = engine.step(tokens, iats, state)
            if g:
                logits, iat_logits = guide(logits, g), guide(iat_logits, g)
            nxt, nbin = sample(logits, s, u[:, 0], bias), sample(iat_logits, s, u[:, 1])
        if tok.length_token and pos == 0:
            nbin = np.zeros_like(nbin)  # a length token carries no gap, as in training
        nxt[done] = EOS
        out_t[live, pos], out_i[live, pos] = nxt, nbin
        done |= nxt == EOS
        if done.all():
            break
        if done.sum() * 4 >= len(done):  # compact once a quarter of the batch has finished: copies stay rare
            keep = np.flatnonzero(~done)
            rows = np.concatenate([keep, keep + len(done)]) if g else keep  # guided: both halves alike
            live, nxt, nbin, done = live[keep], nxt[keep], nbin[keep], done[keep]
            state = engine.select(state, rows)
        tokens, iats = (np.tile(nxt, 2)[:, None], np.tile(nbin, 2)[:, None]) if g else (nxt[:, None], nbin[:, None])
    if tok.head is not None:
        out_t = tok.head.redraw(out_t, np.array([tok.classes.index(c) for c in labels]), lengths_u)
    return [tok.decode(out_t[r], out_i[r], labels[r]) for r in range(b)]


def guide(scores: np.ndarray, g: float) -> np.ndarray:
    """(2n, V) scores, conditional rows then the same rows without their class -> (n, V) guided scores."""
    n = len(scores) // 2
    return scores[:n] + g * (scores[:n] - scores[n:])


def generate(
    engine: Engine,
    tok: Tokenizer,
    counts: dict[str, int],
    sampling: Sampling = Sampling(),
    batch_size: int = 1024,
    seed: int = 0,
    length: int | None = None,
) -> Iterator[list[Flow]]:
    """Yield batches of synthetic flows, `counts[label]` of each class; the same seed gives the same flows.

    `length` forces every flow to exactly that many packets (fixed-length benchmarks, as in the reference study).
    """
    if batch_size < 1:
        raise ValueError(f"batch size: expected >= 1, got {batch_size}")
    if length is not None and not 1 <= length <= tok.max_packets:
        raise ValueError(f"length: expected 1 .. {tok.max_packets} packets (the model's horizon), got {length}")
    rng = np.random.default_rng(seed)
    labels = [c for c, n in counts.items() for _ in range(n)]
    for i in range(0, len(labels), batch_size):
        yield generate_batch(engine, tok, labels[i : i + batch_size], sampling, rng, length)
