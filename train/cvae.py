"""The reference study's conditional VAE baseline: an MLP encoder (hidden 500 then 250, latent 20) and its mirror
decoder over a fixed-length view of a flow's first N packets, both conditioned on the one-hot class.

Per position the encoder sees (direction, scaled length, scaled log-iat, present); the decoder outputs a direction
logit, logits over length buckets, a scaled log-iat and a presence logit. Sampling draws z ~ N(0, I), then every
position's presence, direction and length bucket from the decoder's distributions; the flow ends at the first absent
position (the first is always present).

Lengths are a softmax over buckets, not a regression: payload lengths are multimodal (empty ACKs, full segments,
a protocol's fixed handshake sizes), and a regression would average modes into lengths that never occur; a softmax
over all 1,501 lengths per position would dwarf the study's network (15 M output weights at N = 20). The buckets are
quantiles of the training lengths, so a frequent length gets a bucket of its own, and a sampled bucket becomes a
length drawn from the training lengths that fell in it.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.flows import Flow
from ..runtime.settings import CvaeConfig
from .synthesizer import (MAX_LEN, State, load_net, make_flow, net_tensors, padded, per_class, quiet)

FEATURES = 4  # per position: direction (+1/-1, 0 absent), scaled length, scaled log-iat, present
IAT_FLOOR, IAT_DECADES = 1e-6, 8.0  # log10 gaps from 1 us to 100 s map to 0..1
LENGTH_SCALE = float(np.log1p(MAX_LEN))


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


class Net(nn.Module):
    def __init__(self, c: CvaeConfig, n_classes: int, n_buckets: int):
        super().__init__()
        self.c, self.n_classes, self.per_pos = c, n_classes, n_buckets + 3  # dir logit, buckets, iat, presence
        self.enc = nn.Sequential(nn.Linear(c.packets * FEATURES + n_classes, c.hidden), nn.ReLU(),
                                 nn.Linear(c.hidden, c.hidden2), nn.ReLU(), nn.Linear(c.hidden2, 2 * c.latent))
        self.dec = nn.Sequential(nn.Linear(c.latent + n_classes, c.hidden2), nn.ReLU(), nn.Linear(c.hidden2, c.hidden),
                                 nn.ReLU(), nn.Linear(c.hidden, c.packets * self.per_pos))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: [B, P*FEATURES], y: [B] -> mu, logvar: [B, latent]
        h = self.enc(torch.cat([x, F.one_hot(y, self.n_classes).float()], 1))
        return h.chunk(2, dim=1)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # z: [B, latent], y: [B] -> [B, P, buckets + 3]
        out = self.dec(torch.cat([z, F.one_hot(y, self.n_classes).float()], 1))
        return out.view(len(z), self.c.packets, self.per_pos)


class Cvae:
    """The CVAE baseline (see the module docstring); `log` receives one line per epoch."""

    name = "cvae"

    def __init__(self, config: CvaeConfig = CvaeConfig(), budget: float = 1.0, threads: int = 1,
                 log: Callable[[str], None] | None = None):
        self.config, self.budget, self.threads = config, budget, threads
        self.log = log or quiet
        self.net: Net | None = None
        self.classes: list[str] = []
        self.edges = np.zeros(0)
        self.bucket_lengths: list[np.ndarray] = []

    # -- encoding ------------------------------------------------------------------------------------------------------
    def _buckets(self, pls: np.ndarray) -> None:
        """Quantile edges of the training lengths, and the lengths each bucket holds (with their multiplicity)."""
        qs = np.quantile(pls, np.linspace(0, 1, self.config.length_buckets + 1)[1:-1], method="lower")  # data values
        self.edges = np.unique(qs)  # bucket b holds lengths in (edges[b-1], edges[b]]
        which = np.searchsorted(self.edges, pls, side="left")
        self.bucket_lengths = [pls[which == b].astype(np.int64) for b in range(len(self.edges) + 1)]

    def _inputs(self, flows: list[Flow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, P*FEATURES] encoder input; bucket: [B, P] length bucket ids; iat: [B, P] scaled log-iat."""
        dirs, pls, iats, present = padded(flows, self.config.packets)
        iat = np.clip((np.log10(iats + IAT_FLOOR) + 6) / IAT_DECADES, 0, 1) * present
        x = np.stack([dirs, np.log1p(pls) / LENGTH_SCALE * present, iat, present], axis=2)  # [B, P, FEATURES]
        bucket = np.searchsorted(self.edges, pls, side="left")
        return (torch.from_numpy(x.reshape(len(flows), -1)).float(), torch.from_numpy(bucket),
                torch.from_numpy(iat).float())

    # -- training ------------------------------------------------------------------------------------------------------
    def _loss(self, out: torch.Tensor, x: torch.Tensor, bucket: torch.Tensor, iat: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per flow, summed over positions. out: [B, P, buckets + 3], x: [B, P*FEATURES]."""
        x = x.view(len(x), self.config.packets, FEATURES)
        present = x[..., 3]
        up = (x[..., 0] > 0).float()
        nll = F.binary_cross_entropy_with_logits(out[..., -1], present, reduction="none")
        nll = nll + present * F.binary_cross_entropy_with_logits(out[..., 0], up, reduction="none")
        nll = nll + present * F.cross_entropy(out[..., 1:-2].transpose(1, 2), bucket, reduction="none")
        gap = present.clone()
        gap[:, 0] = 0  # the first packet's gap is 0 by definition
        nll = nll + gap * (out[..., -2] - iat) ** 2 / (2 * self.config.iat_sigma ** 2)
        return nll.sum(1)

    def fit(self, flows: list[Flow], seed: int = 0) -> None:
        if not flows:
            raise ValueError("no flows to fit on")
        c = self.config
        torch.set_num_threads(self.threads)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.classes = sorted({f.label for f in flows})
        self._buckets(np.minimum(np.concatenate([f.pl[: c.packets] for f in flows]), MAX_LEN))
        self.net = net = Net(c, len(self.classes), len(self.bucket_lengths))
        x, bucket, iat = self._inputs(flows)
        y = torch.tensor([self.classes.index(f.label) for f in flows])
        opt = torch.optim.Adam(net.parameters(), lr=c.lr)
        epochs = max(1, round(c.epochs * self.budget))
        per_epoch = -(-len(flows) // c.batch_size)
        warm = max(1, int(c.kl_warmup * epochs * per_epoch))
        self.log(f"cvae: {net.n_params():,} parameters; {len(self.classes)} classes; {epochs} epochs")
        step, start = 0, time.perf_counter()
        net.train()
        for epoch in range(epochs):
            order = torch.from_numpy(rng.permutation(len(flows)))
            total = 0.0
            for i in range(0, len(flows), c.batch_size):
                idx = order[i:i + c.batch_size]
                mu, logvar = net.encode(x[idx], y[idx])
                z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
                kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
                nll = self._loss(net.decode(z, y[idx]), x[idx], bucket[idx], iat[idx])
                loss = (nll + min(1.0, step / warm) * kl).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float((nll + kl).sum().detach())
                step += 1
            self.log(f"cvae epoch {epoch + 1:3d}  loss {total / len(flows):.3f}  {time.perf_counter() - start:.0f} s")
        net.eval()

    # -- the fitted state ----------------------------------------------------------------------------------------------
    def state(self) -> State:
        if self.net is None:
            raise ValueError("cvae: fit before saving")
        # the buckets' lengths end to end, and how many each holds
        tensors = {**net_tensors(self.net), "edges": self.edges,
                   "bucket_lengths": np.concatenate(self.bucket_lengths).astype(np.int64),
                   "bucket_sizes": np.array([len(b) for b in self.bucket_lengths], dtype=np.int64)}
        return State({"classes": self.classes, "parameters": self.net.n_params()}, tensors)

    def restore(self, state: State) -> None:
        t = state.tensors
        self.classes = [str(c) for c in state.config["classes"]]
        self.edges = t["edges"]
        self.bucket_lengths = np.split(t["bucket_lengths"], np.cumsum(t["bucket_sizes"])[:-1])
        self.net = Net(self.config, len(self.classes), len(self.bucket_lengths))
        load_net(self.net, t)

    # -- sampling ------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]:
        if self.net is None:
            raise ValueError("cvae: fit before sampling")
        torch.set_num_threads(self.threads)
        return per_class(counts, self.classes, seed, self._class)

    def _class(self, label: str, want: int, rng: np.random.Generator) -> list[Flow]:
        z = torch.from_numpy(rng.standard_normal((want, self.config.latent))).float()
        y = torch.full((want,), self.classes.index(label))
        o = self.net.decode(z, y).numpy()  # [want, P, buckets + 3]
        present = rng.random(o.shape[:2]) < sigmoid(o[..., -1])
        present[:, 0] = True
        up = rng.random(o.shape[:2]) < sigmoid(o[..., 0])
        logits = o[..., 1:-2]
        p = np.exp(logits - logits.max(-1, keepdims=True))
        cdf = np.cumsum(p / p.sum(-1, keepdims=True), -1)
        bucket = np.minimum((cdf < rng.random(o.shape[:2])[..., None]).sum(-1), cdf.shape[-1] - 1)  # inverse CDF
        pick = rng.random(o.shape[:2])
        iat = 10 ** (np.clip(o[..., -2], 0, 1) * IAT_DECADES - 6) - IAT_FLOOR  # the decoder's mean gap
        flows = []
        for i in range(want):
            n = int(np.argmin(present[i])) if not present[i].all() else self.config.packets
            pls = [self._length(bucket[i, k], pick[i, k]) for k in range(n)]
            flows.append(make_flow(label, np.where(up[i, :n], 1, -1), np.array(pls), iat[i, :n]))
        return flows

    def _length(self, bucket: int, u: float) -> int:
        """A training length from the bucket (u uniform in [0, 1)); an empty bucket falls back to its edge."""
        held = self.bucket_lengths[bucket]
        if len(held):
            return int(held[int(u * len(held))])
        return int(self.edges[min(bucket, len(self.edges) - 1)])
