"""Training: AdamW, warm-up + cosine, validation loss, and the checkpoint chosen on validation TSTR.

Why not the validation-loss optimum: on small traffic corpora it under-fits the class structure (TSTR 0.77-0.83 in
a prototype) while training long enough to lift TSTR starts copying training flows. So a slice of the training flows
is held out; after every epoch the model generates flows for each class, a forest trained on them is scored on the
held-out slice (validation TSTR), and the copy rate of those flows is measured against the training flows. The kept
checkpoint is the best validation TSTR, averaged over the epoch and the `val_window` - 1 before it, among epochs whose
copy rate stays at or below the natural rate (the share of held-out real flows that equal a training flow; the
synthetic rate weighs each class by its share of those flows, as the natural rate does, though validation draws
classes more evenly). Training stops when neither validation loss nor that score has improved for `patience` epochs.
Everything after the optimizer step (validation, generation, the saved checkpoint) uses an exponential moving average
of the weights, not the raw iterate (see TrainConfig.ema_horizon).
With `refit`, a second model is then trained on every flow for the kept epoch's count and saved instead.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
import yaml
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from ..runtime import metrics
from ..runtime.flows import Flow, write_atomic
from ..runtime.sampler import Sampling, generate
from ..runtime.tokenizer import PAD, Tokenizer
from .checkpoint import Model, build_model, check_out, save_run
from ..runtime.settings import TrainConfig
from .data import IGNORE, batches, encode_all, targets
from .engine import TorchEngine
from .lengths import plain_params, share_lengths


def ema_update(decay: float):
    """AveragedModel's update: the iterates so far weighted by decay**age, bias-corrected as Adam corrects its moments.
    A plain EMA starts from the random initial weights and still holds 13% of them after 400 steps (a short run)."""

    def update(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return averaged + (current - averaged) * ((1 - decay) / (1 - decay ** (n + 1)))

    return update


def lr_at(step: int, total: int, c: TrainConfig) -> float:
    warm = max(1, int(c.warmup * total))
    if step < warm:
        return c.lr * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * frac))


def loss_fn(model: Model, toks: torch.Tensor, bins: torch.Tensor, tok: Tokenizer, c: TrainConfig | None = None,
            per_flow: tuple[float, float] | None = None) -> torch.Tensor:
    """Next-token + next-iat cross-entropy; with `c`, packets after the first `c.head_packets` weigh `c.tail_weight`.

    The mean over the batch's targets by default. With `per_flow` (the mean target weight per training flow of each
    stream, from `target_weights`), the sum over the batch's targets over per_flow x flows in the batch: every target
    then weighs the same whatever batch it lands in. Batches hold flows of similar length (train/data.py), so a
    batch mean gave each of a short flow's targets up to 13x the weight of a long flow's, and 64-packet models ended
    flows early.
    """
    logits, iat_logits, _ = model(toks[:, :-1], bins[:, :-1])  # (B, T, vocab), (B, T, iat_bins)
    y, ybin = targets(toks, bins, tok)  # (B, T) each, IGNORE where there is nothing to predict
    w = loss_weights(y.shape[1], tok, c).to(y.device)

    def reduce(lg: torch.Tensor, target: torch.Tensor, norm: float | None) -> torch.Tensor:
        ce = F.cross_entropy(lg.transpose(1, 2), target, reduction="none")  # (B, T), 0 where ignored
        ww = w * (target != IGNORE)
        return (ce * ww).sum() / (ww.sum().clamp(min=1e-9) if norm is None else norm * len(target))

    return (reduce(logits, y, per_flow and per_flow[0]) +
            reduce(iat_logits, ybin, per_flow and per_flow[1]))


def loss_weights(t: int, tok: Tokenizer, c: TrainConfig | None) -> torch.Tensor:
    """(t,) weight of each target position: 1, or c.tail_weight after the first c.head_packets packets."""
    if c is None or c.tail_weight == 1.0:
        return torch.ones(t)
    # target t is packet t (0-based) or the <EOS> after packet t-1: the early ones are what a classifier sees first
    head = c.head_packets + tok.length_token  # a length token is target 0, before the first packet
    return torch.where(torch.arange(t) < head, 1.0, c.tail_weight)


def target_weights(seqs, tok: Tokenizer, c: TrainConfig) -> tuple[float, float]:
    """Mean loss weight per flow of the token targets and of the inter-arrival targets (`loss_fn`'s per_flow)."""
    tokens = iats = 0.0
    for toks, bins in batches(seqs, 1024):
        y, ybin = targets(toks, bins, tok)
        w = loss_weights(y.shape[1], tok, c)
        tokens += float((w * (y != IGNORE)).sum())
        iats += float((w * (ybin != IGNORE)).sum())
    return tokens / len(seqs), iats / len(seqs)


@torch.no_grad()
def val_loss(model: Model, seqs, tok: Tokenizer, device: str) -> float:
    model.eval()
    losses = [loss_fn(model, a.to(device), b.to(device), tok).item() for a, b in batches(seqs, 256)]
    return float(np.mean(losses))


def split_validation(flows: list[Flow], c: TrainConfig) -> tuple[list[Flow], list[Flow]]:
    labels = [f.label for f in flows]
    counts = Counter(labels)
    # stratify where every class can give one flow to each side; otherwise fall back to a plain split
    strat = labels if min(counts.values()) >= 2 and len(flows) * c.val_fraction >= len(counts) else None
    return train_test_split(flows, test_size=c.val_fraction, random_state=c.seed, stratify=strat)


class CheckpointRule:
    """The module docstring's rule, epoch by epoch: `update(row)` -> (keep this epoch's weights, stop training).

    An epoch is kept when its copy rate is at or below the natural rate and its score beats every kept epoch's; its
    score (`row["val_score"]`, set here with `row["val_window"]`, the epochs it averages) is the mean validation TSTR
    of the last `window` epochs, itself included. Only an epoch with a full window may be kept, lest a spike in the
    first epochs stand unbeaten. Training stops after `patience` epochs in which neither happened nor validation loss
    reached a new low.
    """

    def __init__(self, natural_copy_rate: float, patience: int, window: int) -> None:
        self.natural, self.patience = natural_copy_rate, patience
        self.best: dict | None = None
        self.best_loss, self.stale = float("inf"), 0
        self.recent: deque[float] = deque(maxlen=window)

    def update(self, row: dict) -> tuple[bool, bool]:
        self.recent.append(row["val_tstr"])
        row["val_score"], row["val_window"] = float(np.mean(self.recent)), len(self.recent)
        improved = (len(self.recent) == self.recent.maxlen and row["val_copy_rate"] <= self.natural
                    and (self.best is None or row["val_score"] > self.best["val_score"]))
        if improved:
            self.best = row
        self.stale = 0 if improved or row["val_loss"] < self.best_loss else self.stale + 1
        self.best_loss = min(self.best_loss, row["val_loss"])
        return improved, self.stale >= self.patience


def resolve_device(name: str) -> str:
    """auto = CUDA where torch sees a GPU, else the CPU; asking for CUDA without one is an error, not a fallback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: torch sees no CUDA GPU here (this torch build or machine has none)")
    return name


def new_model(model_type: str, tok: Tokenizer, mc: dict | None, c: TrainConfig, device: str) -> Model:
    """A fresh model with the options of `c` that shape it, and the tokenizer's factorised head where it has one."""
    h = tok.head
    model = build_model(model_type, tok, {**(mc or {}), "head_size": h.size} if h else mc)
    if h:
        model.set_head(torch.from_numpy(h.head_of), torch.from_numpy(h.logp).float())
    share_lengths(model, tok, c.length_scales)
    return model.to(device)


def fit(model: Model, flows: list[Flow], seqs, tok: Tokenizer, c: TrainConfig, device: str,
        rng: np.random.Generator, other_seqs=()) -> Iterator[tuple[int, Model, float]]:
    """Train `model` on `flows` (encoded as `seqs`) for up to c.epochs; after each epoch yields (epoch, the weights to
    evaluate and keep: the weight average, or the model itself without one, seconds the epoch took).

    `other_seqs` (encoded flows, class hidden) take c.other_share of the draws, on top of the flows' own: an epoch
    draws len(flows) / (1 - other_share) sequences, so the flows are drawn as often as in a run without them."""
    # matrices decay, except those a model marks (Mamba's A_log: decay would pull every A towards -1)
    decay = [p for p in model.parameters() if p.dim() >= 2 and not getattr(p, "_no_weight_decay", False)]
    other = [p for p in model.parameters() if p.dim() < 2 or getattr(p, "_no_weight_decay", False)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay}, {"params": other, "weight_decay": 0}],
                            lr=c.lr, betas=(0.9, 0.95), fused=device == "cuda")
    share = c.other_share if len(other_seqs) else 0.0
    n_draws = round(len(seqs) / (1 - share))
    steps_per_epoch = math.ceil(n_draws / c.batch_size)
    total = c.epochs * steps_per_epoch
    ema_decay = 1 - 1 / max(1.0, c.ema_horizon * total)
    ema = AveragedModel(model, avg_fn=ema_update(ema_decay)) if c.ema_horizon else None
    n_class = Counter(f.label for f in flows)
    weights = np.array([n_class[f.label] ** -c.balance for f in flows])
    if share:  # the other flows uniformly, as one share of the draws
        weights = np.concatenate([weights / weights.sum() * (1 - share),
                                  np.full(len(other_seqs), share / len(other_seqs))])
    per_flow = target_weights(seqs, tok, c)  # of the training flows: the same loss scale with or without others
    seqs = [*seqs, *other_seqs]
    step = 0
    for epoch in range(1, c.epochs + 1):
        model.train()
        t0, n_tok = time.perf_counter(), 0
        bar = tqdm(batches(seqs, c.batch_size, rng, weights, n_draws), total=steps_per_epoch, desc=f"epoch {epoch}",
                   leave=False, disable=None)  # a bar on a terminal only; the epoch line is logged anyway
        for toks, bins in bar:
            if c.class_dropout:  # the class slot of a hidden class: <PAD>, as the sampler's unguided rows
                toks[torch.from_numpy(rng.random(len(toks)) < c.class_dropout), 0] = PAD
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, c)
            loss = loss_fn(model, toks.to(device), bins.to(device), tok, c, per_flow)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema:
                ema.update_parameters(model)
            step += 1
            n_tok += int((toks != 0).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{n_tok / (time.perf_counter() - t0):,.0f}")
        yield epoch, (ema.module if ema else model), time.perf_counter() - t0


def refit(flows: list[Flow], out: str | Path, model_type: str, mc: dict | None, tok: Tokenizer, c: TrainConfig,
          device: str, best: dict, meta: dict, per_class: dict[str, int], log, other_seqs=()) -> None:
    """Train a fresh model on every flow, validation slice included, for the epochs the checkpoint rule chose, and
    write it over the chosen checkpoint. A small class then keeps every flow it has; the copy rate can no longer be
    held against a natural rate, so it is measured against all flows and logged."""
    torch.manual_seed(c.seed)
    model = new_model(model_type, tok, mc, c, device)
    for epoch, kept, _ in fit(model, flows, encode_all(flows, tok), tok, c, device, np.random.default_rng(c.seed),
                              other_seqs):
        if epoch == best["epoch"]:
            break
    syn = [f for b in generate(TorchEngine(kept), tok, per_class, seed=c.seed) for f in b]
    copy = metrics.copy_rate_as(flows, syn, flows)
    save_run(out, kept, tok, {**meta, "selected": best, "refit": {"flows": len(flows), "epochs": epoch,
                                                                   "copy_rate": copy}})
    log(f"refit on all {len(flows)} flows for {epoch} epochs: copy rate {copy:.2f} against them")


def train(flows: list[Flow], out: str | Path, mc: dict | None = None, c: TrainConfig = TrainConfig(),
          log=print, model_type: str = "llama", other: list[Flow] = ()) -> dict:
    """Train a generator on labelled flows and write the chosen checkpoint to `out`; returns the summary.

    `model_type` is "llama" or "mamba" (runtime/settings.py MODEL_CONFIGS); `mc` overrides that config's defaults
    (vocabulary sizes come from the tokenizer). `other`: flows of other classes, learnt with the class hidden
    (`fit`); they take no part in validation. Raises ValueError when the flows cannot train a class-conditioned
    model (fewer than 2 classes, or a class with no flow left for training), or when an other flow is of a class.
    """
    check_out(out)
    classes = sorted({f.label for f in flows if f.pl})
    if len(classes) < 2 or "" in classes:
        raise ValueError(f"need labelled flows of at least 2 classes with packets (got {len(classes)} class(es)"
                         f"{', some unlabelled' if '' in classes else ''})")
    other = [f for f in other if f.pl]
    shared = sorted({f.label for f in other} & set(classes))
    if shared:  # most likely the training flows themselves, or flows beside the test split's
        raise ValueError(f"other flows: {sum(f.label in shared for f in other)} are of the training classes "
                         f"({', '.join(shared[:3])}{' ...' if len(shared) > 3 else ''}); expected other classes")
    torch.manual_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    device = resolve_device(c.device)
    tok = Tokenizer(classes=tuple(classes), max_packets=c.max_packets, length_token=c.length_token,
                    any_class=c.class_dropout > 0 or bool(other))
    flows = [f for f in flows if f.pl]
    train_flows, val_flows = split_validation(flows, c)
    train_seqs, val_seqs = encode_all(train_flows, tok), encode_all(val_flows, tok)
    natural = metrics.copy_rate(train_flows, val_flows)
    if c.length_head:
        tok = tok.with_length_head(train_flows, c.length_head)
    try:
        other_seqs = [tok.encode(f, hide_class=True) for f in other]
    except ValueError as e:
        raise ValueError(f"other flows: {e}") from None
    model = new_model(model_type, tok, mc, c, device)
    n_params = plain_params(model)
    log(f"model: {model_type}, {n_params / 1e6:.2f} M parameters; {len(tok.classes)} classes; "
        f"{len(train_flows)} train / {len(val_flows)} validation flows"
        f"{f' (+ {len(other)} of other classes)' if other else ''}; natural copy rate {natural:.2f}; {device}")

    n_class = Counter(f.label for f in train_flows)
    per_class = {k: min(c.val_flows_per_class, max(v, 10)) for k, v in n_class.items()}
    meta = {"train": asdict(c), "natural_copy_rate": natural, "other_flows": len(other)}

    # a run shorter than the window scores its last epoch by all of them
    history, rule = [], CheckpointRule(natural, c.patience, min(c.val_window, c.epochs))
    for epoch, kept, epoch_s in fit(model, train_flows, train_seqs, tok, c, device, rng, other_seqs):
        vl = val_loss(kept, val_seqs, tok, device)
        syn = [f for b in generate(TorchEngine(kept), tok, per_class, seed=c.seed) for f in b]
        vscore = metrics.train_test_f1(syn, val_flows, seed=c.seed)
        vcopy = metrics.copy_rate_as(train_flows, syn, val_flows)  # like for like with the natural rate
        row = {"epoch": epoch, "val_loss": vl, "val_tstr": vscore, "val_copy_rate": vcopy, "epoch_s": epoch_s}
        history.append(row)
        improved, stop = rule.update(row)
        if improved:
            save_run(out, kept, tok, {**meta, "selected": row})
        mean = f" (mean {row['val_score']:.3f})" if row["val_window"] > 1 else ""
        log(f"epoch {epoch:3d}  val loss {vl:.3f}  val TSTR {vscore:.3f}{mean}  "
            f"copy {vcopy:.2f}{'' if vcopy <= natural else ' (> natural)'}  {epoch_s:.1f} s{'  *' if improved else ''}")
        if stop:
            break
    best = rule.best
    if best is None:  # every epoch copied more than the natural rate: keep the last one, and say so
        best = history[-1]
        save_run(out, kept, tok, {**meta, "selected": best})
        log("warning: no epoch kept the copy rate at or below the natural rate; kept the last epoch")
    if c.refit:
        refit(flows, out, model_type, mc, tok, c, device, best, meta, per_class, log, other_seqs)
    write_atomic(Path(out, "history.yaml"), lambda tmp: Path(tmp).write_text(yaml.safe_dump(history, sort_keys=False)))
    return {"selected": best, "history": history, "natural_copy_rate": natural, "params": n_params}
