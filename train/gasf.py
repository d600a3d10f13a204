"""The reference study's image diffusion baseline (NetDiffus-NR style): flows as Gramian Angular Summation Field
images, a small class-conditional conv U-Net trained with DDPM (v-prediction, cosine schedule), sampled with DDIM,
images mapped back to flows.

Image: a flow's first N signed lengths, each rescaled to x in [0, 1] (`to_unit`, `to_x`), phi = arccos(x), G_ij =
cos(phi_i + phi_j): an N x N image in [-1, 1]. The rescaling puts "no packet" at phi = 45 degrees and a packet at
least 9 degrees away, upstream towards 0 and downstream towards 90, log-scaled in its length: min-max scaling of raw
signed lengths would put an empty upstream packet 1/3002 from "no packet" and spend the range on a few large lengths.

Back to a flow: the diagonal gives cos(2 phi_i), hence x_i; each phi_i is then refined by averaging the estimates
arccos(G_ij) - phi_j of its row that agree with the diagonal's, and the flow ends at its first position read as no
packet. Each length is snapped to the nearest length seen in training for that class and direction.

Timing is not modelled: each synthetic flow takes its inter-arrival times from a random real training flow of its
class (positions beyond that flow's length take gaps drawn from the class's pooled gaps).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.flows import Flow
from ..runtime.settings import GasfConfig
from .synthesizer import (MAX_LEN, State, by_label, load_net, make_flow, net_tensors, padded, per_class, quiet)

GAP = 0.2  # |x - 0.5| of a packet is at least GAP / 2: "no packet" (0.5) stays apart from an empty packet
PRESENT = GAP / 4  # |x - 0.5| above this reads as a packet
LENGTH_SCALE = float(np.log1p(MAX_LEN))
AGREE = 0.1  # radians: a row's estimate of phi_i within this of the diagonal's joins the average


# -- images ------------------------------------------------------------------------------------------------------------
def to_unit(dirs: np.ndarray, pls: np.ndarray, present: np.ndarray) -> np.ndarray:
    """[B, N] packets -> u in [0, 1]: 0.5 = no packet, upstream above, downstream below, log-scaled length."""
    m = GAP + (1 - GAP) * np.log1p(pls) / LENGTH_SCALE
    return 0.5 + 0.5 * dirs * m * present


def to_x(u: np.ndarray) -> np.ndarray:
    """u -> x = cos(pi/2 (1 - u)) in [0, 1], so that phi = arccos(x) is linear in u: upstream and downstream
    packets get equal angular ranges (a linear x would squeeze downstream ones into a quarter of the angles)."""
    return np.cos(np.pi / 2 * (1 - u))


def from_x(x: np.ndarray) -> np.ndarray:
    return 1 - np.arccos(np.clip(x, 0, 1)) / (np.pi / 2)


def gasf(x: np.ndarray) -> np.ndarray:
    """[B, N] in [0, 1] -> [B, N, N] Gramian Angular Summation Field."""
    phi = np.arccos(np.clip(x, 0, 1))
    return np.cos(phi[:, :, None] + phi[:, None, :])


def invert(g: np.ndarray) -> np.ndarray:
    """[B, N, N] (possibly noisy) GASF -> [B, N] x in [0, 1]: the diagonal, refined by the agreeing row estimates."""
    g = np.clip((g + g.transpose(0, 2, 1)) / 2, -1, 1)
    diag = np.diagonal(g, axis1=1, axis2=2)
    phi = np.arccos(np.sqrt((diag + 1) / 2))  # cos(2 phi) = 2 x^2 - 1
    est = np.arccos(g) - phi[:, None, :]  # est[b, i, j] = phi_i estimated through phi_j
    agree = (np.abs(est - phi[:, :, None]) < AGREE) & (est >= 0) & (est <= np.pi / 2)
    phi = (est * agree).sum(2) / np.maximum(agree.sum(2), 1)  # the diagonal always agrees with itself
    return np.cos(phi)


# -- the denoiser ------------------------------------------------------------------------------------------------------
class Block(nn.Module):
    """GroupNorm-SiLU-conv twice, the step + class embedding added in between; residual."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # x: [B, cin, H, W], e: [B, emb] -> [B, cout, H, W]
        h = self.c1(F.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        return self.c2(F.silu(self.n2(h))) + self.skip(x)


class UNet(nn.Module):
    """Levels N/2, N/4, N/8 of width c, 2c, 4c; predicts v = sqrt(a) noise - sqrt(1 - a) image (Salimans and Ho's
    v-prediction: sound at both ends of the schedule, where predicting the noise or the image alone is not).

    The stem folds 2 x 2 pixels into one and skips are added, not concatenated: one CPU thread must afford a few
    thousand steps within minutes, so the compute sits at the coarse levels, with most of the parameters."""

    def __init__(self, n_classes: int, c: int):
        super().__init__()
        emb = 4 * c
        self.c = c
        self.t_mlp = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cls = nn.Embedding(n_classes, emb)
        self.stem = nn.Conv2d(1, c, 2, stride=2)
        self.d1, self.down1 = Block(c, c, emb), nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.d2, self.down2 = Block(2 * c, 2 * c, emb), nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)
        self.m1, self.m2 = Block(4 * c, 4 * c, emb), Block(4 * c, 4 * c, emb)
        self.up2, self.u2 = nn.Conv2d(4 * c, 2 * c, 1), Block(2 * c, 2 * c, emb)
        self.up1, self.u1 = nn.Conv2d(2 * c, c, 1), Block(c, c, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.ConvTranspose2d(c, 1, 2, stride=2))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: [B, 1, N, N], t: [B] noise level, y: [B] class -> [B, 1, N, N]
        half = self.c // 2
        freq = torch.exp(-math.log(10000) * torch.arange(half) / half)
        angle = t.float()[:, None] * freq[None]
        e = self.t_mlp(torch.cat([angle.sin(), angle.cos()], 1)) + self.cls(y)  # [B, emb]
        h1 = self.d1(self.stem(x), e)  # [B, c, N/2, N/2]
        h2 = self.d2(self.down1(h1), e)  # [B, 2c, N/4, N/4]
        h = self.m2(self.m1(self.down2(h2), e), e)  # [B, 4c, N/8, N/8]
        h = self.u2(self.up2(F.interpolate(h, scale_factor=2.0)) + h2, e)  # [B, 2c, N/4, N/4]
        h = self.u1(self.up1(F.interpolate(h, scale_factor=2.0)) + h1, e)  # [B, c, N/2, N/2]
        return self.out(h)


def alpha_bar(steps: int) -> torch.Tensor:
    """[steps] cumulative signal share of the cosine schedule (Nichol and Dhariwal), level t = 0 .. steps-1."""
    s = 0.008
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


# -- the baseline ------------------------------------------------------------------------------------------------------
class GasfDiffusion:
    """The GASF diffusion baseline (see the module docstring); `log` receives one line per epoch."""

    name = "gasf"

    def __init__(self, config: GasfConfig = GasfConfig(), budget: float = 1.0, threads: int = 1,
                 log: Callable[[str], None] | None = None):
        self.config, self.budget, self.threads = config, budget, threads
        self.log = log or quiet
        self.net: UNet | None = None
        self.classes: list[str] = []
        self.flows: dict[str, list[Flow]] = {}
        self.lengths: dict[tuple[str, int], np.ndarray] = {}  # (class, direction) -> sorted lengths seen

    def images(self, flows: list[Flow]) -> torch.Tensor:
        """[B, 1, N, N] GASF images of the flows' first N packets."""
        dirs, pls, _, present = padded(flows, self.config.packets)
        return torch.from_numpy(gasf(to_x(to_unit(dirs, pls, present)))).float()[:, None]

    def fit(self, flows: list[Flow], seed: int = 0) -> None:
        if not flows:
            raise ValueError("no flows to fit on")
        c = self.config
        torch.set_num_threads(self.threads)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self._keep(flows)
        self.net = net = UNet(len(self.classes), c.width)
        x = self.images(flows)
        y = torch.tensor([self.classes.index(f.label) for f in flows])
        ab = alpha_bar(c.diffusion_steps)
        epochs = max(1, round(c.epochs * self.budget))
        total_steps = epochs * -(-len(flows) // c.batch_size)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
        self.log(f"gasf: {net.n_params():,} parameters; {len(self.classes)} classes; {epochs} epochs")
        start = time.perf_counter()
        net.train()
        for epoch in range(epochs):
            order = torch.from_numpy(rng.permutation(len(flows)))
            total = 0.0
            for i in range(0, len(flows), c.batch_size):
                idx = order[i:i + c.batch_size]
                t = torch.randint(0, c.diffusion_steps, (len(idx),))
                noise = torch.randn_like(x[idx])
                a = ab[t][:, None, None, None]
                v = a.sqrt() * noise - (1 - a).sqrt() * x[idx]
                loss = F.mse_loss(net(a.sqrt() * x[idx] + (1 - a).sqrt() * noise, t, y[idx]), v)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            self.log(f"gasf epoch {epoch + 1:3d}  loss {total / len(flows):.4f}  {time.perf_counter() - start:.0f} s")
        net.eval()

    def _keep(self, flows: list[Flow]) -> None:
        """The real flows of each class (their timing is lent to the synthetic ones) and the lengths they hold."""
        self.flows = by_label(flows)
        self.classes = list(self.flows)
        for k, fs in self.flows.items():
            for d in (1, -1):
                seen = [min(p, MAX_LEN) for f in fs for p, fd in zip(f.pl[: self.config.packets], f.dir) if fd == d]
                self.lengths[k, d] = np.unique(seen)

    def state(self) -> State:
        if self.net is None:
            raise ValueError("gasf: fit before saving")
        flows = [f for fs in self.flows.values() for f in fs]
        return State({"classes": self.classes, "parameters": self.net.n_params()}, net_tensors(self.net), flows)

    def restore(self, state: State) -> None:
        self._keep(state.flows)
        self.net = UNet(len(self.classes), self.config.width)
        load_net(self.net, state.tensors)

    @torch.no_grad()
    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]:
        if self.net is None:
            raise ValueError("gasf: fit before sampling")
        torch.set_num_threads(self.threads)
        return per_class(counts, self.classes, seed,
                         lambda label, want, rng: self._flows(label, self._ddim(label, want, rng), rng))

    def _ddim(self, label: str, want: int, rng: np.random.Generator) -> np.ndarray:
        """[want, N, N] images of the class by deterministic DDIM from seeded noise."""
        c = self.config
        ab = alpha_bar(c.diffusion_steps)
        levels = np.unique(np.linspace(c.diffusion_steps - 1, 0, c.sample_steps).round().astype(int))[::-1]
        x = torch.from_numpy(rng.standard_normal((want, 1, c.packets, c.packets))).float()
        y = torch.full((want,), self.classes.index(label))
        for k, t in enumerate(levels):
            a = ab[t]
            v = self.net(x, torch.full((want,), int(t)), y)
            x0 = (a.sqrt() * x - (1 - a).sqrt() * v).clamp(-1, 1)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            a_next = ab[levels[k + 1]] if k + 1 < len(levels) else torch.tensor(1.0)
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x0[:, 0].numpy()

    def _flows(self, label: str, images: np.ndarray, rng: np.random.Generator) -> list[Flow]:
        x = from_x(invert(images)) - 0.5  # [B, N], sign = direction
        real = self.flows[label]
        pooled = np.array([t for f in real for t in f.iat[1:]] or [0.0])
        out = []
        for row in x:
            absent = np.flatnonzero(np.abs(row) <= PRESENT)
            n = max(1, int(absent[0]) if len(absent) else len(row))
            dirs = np.where(row[:n] < 0, -1, 1)
            m = np.clip((2 * np.abs(row[:n]) - GAP) / (1 - GAP), 0, 1)
            pls = np.array([self._snap(label, d, v) for d, v in zip(dirs, np.expm1(m * LENGTH_SCALE))])
            lender = real[rng.integers(len(real))]
            iats = np.array(lender.iat[:n] + list(rng.choice(pooled, max(0, n - len(lender.iat)))))
            out.append(make_flow(label, dirs, pls, iats))
        return out

    def _snap(self, label: str, d: int, length: float) -> int:
        """The length seen in training for this class and direction nearest to `length` (any direction if none)."""
        seen = self.lengths[label, d]
        if not len(seen):
            seen = self.lengths[label, -d]
        if not len(seen):
            return int(round(length))
        i = int(np.clip(np.searchsorted(seen, length), 1, len(seen) - 1)) if len(seen) > 1 else 0
        return int(seen[i - 1] if i and length - seen[i - 1] < seen[i] - length else seen[i])
