"""Mamba over flow tokens: residual blocks of RMSNorm + a selective state-space mixer, in plain PyTorch.

The same contract as train/model.py's Transformer: each position embeds a packet token plus its inter-arrival bin and
predicts the next packet token and the next bin; `forward(tokens, iats, state, last_only)` returns the logits and the
new state. The state is what a recurrent model carries between steps, per layer:

    conv  (B, d_conv - 1, d_inner)   the last d_conv - 1 inputs of the causal depthwise convolution
    ssm   (B, d_inner, d_state)      the selective scan's hidden state h

Both have only static dimensions besides the batch, so a graph's first step feeds zeros (runtime/engine.py), and a
step's cost does not depend on how many positions came before it (a KV cache grows; this does not).

One mixer (Gu and Dao 2023, as in mamba-minimal), x of shape (B, T, dim):

    x, z  = in_proj(x)                          (B, T, d_inner) each
    x     = silu(causal_conv1d(x))              depthwise, width d_conv, its window continued from the state
    delta, B, C = x_proj(x)                     (B, T, dt_rank), (B, T, d_state), (B, T, d_state)
    delta = softplus(dt_proj(delta))            (B, T, d_inner): the input-dependent step size ("selective")
    h_t   = exp(delta_t A) h_{t-1} + delta_t B_t x_t,   A = -exp(A_log) (d_inner, d_state)
    y_t   = h_t C_t + D x_t
    out   = out_proj(y * silu(z))

The scan is a loop over positions, the recurrence exactly as written, so one step of generation and the
full-sequence forward are the same arithmetic, and a prefill continues from any state. Sequences here are at most 66
tokens: at that length the loop was faster on the CPU than materialising all positions' decays, and far faster
than a log-space parallel scan, which also drifts from the recurrence (docs/design.md, Mamba). Where the
`mamba-ssm` CUDA kernels import, training on a GPU (no incoming state) uses their fused selective scan instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.settings import MambaConfig
from .model import FlowModel, RMSNorm

try:  # the fused CUDA scan of the reference implementation, where it is installed (never on the CPU-only install)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:
    selective_scan_fn = None

LayerState = tuple[torch.Tensor, torch.Tensor]  # conv (B, d_conv - 1, d_inner), ssm (B, d_inner, d_state)


def selective_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x, delta (b, t, d_inner); A (d_inner, n); B, C (b, t, n); h (b, d_inner, n) -> y (b, t, d_inner), last h.

    Position by position, everything of one position at once: its (b, d_inner, n) tensors stay in cache. Computing
    the decays and inputs of all positions first, as (b, t, d_inner, n) tensors, streamed 38 MB tensors per layer
    and ran 2-4x slower forward + backward (module docstring)."""
    ys = []
    for x_t, delta_t, B_t, C_t in zip(x.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):  # (b, d_inner), (b, n)
        h = torch.exp(delta_t.unsqueeze(-1) * A) * h + (delta_t * x_t).unsqueeze(-1) * B_t.unsqueeze(1)
        ys.append((h @ C_t.unsqueeze(-1)).squeeze(-1))  # (b, d_inner, n) @ (b, n, 1) -> (b, d_inner)
    return torch.stack(ys, 1), h


class MambaMixer(nn.Module):
    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        d, n, r = cfg.d_inner, cfg.d_state, cfg.rank
        self.d_inner, self.d_state, self.rank = d, n, r
        self.in_proj = nn.Linear(cfg.dim, 2 * d, bias=False)
        # Mamba's depthwise convolution, for its weight (d_inner, 1, d_conv) and bias: `forward` applies them to a
        # window continued from the state (zeros before the first token), never with conv1d's own padding
        self.conv1d = nn.Conv1d(d, d, cfg.d_conv, groups=d, bias=True)
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=True)
        # S4D-real initialisation: A = -(1 .. n) for every channel. Its log is learnt so that A stays negative.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))
        self.D = nn.Parameter(torch.ones(d))
        self.out_proj = nn.Linear(d, cfg.dim, bias=False)
        self.A_log._no_weight_decay = self.D._no_weight_decay = True  # train.py: decaying them pulls A towards -1

    def forward(self, x: torch.Tensor, state: LayerState | None) -> tuple[torch.Tensor, LayerState]:
        """x (b, t, dim), state (None = zeros: the start of a flow) -> (b, t, dim), new state."""
        b, kernel = x.shape[0], self.conv1d.kernel_size[0]
        conv_state, h = state or (x.new_zeros(b, kernel - 1, self.d_inner), x.new_zeros(b, self.d_inner, self.d_state))
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (b, t, d_inner) each
        window = torch.cat([conv_state, x], dim=1)  # (b, d_conv - 1 + t, d_inner)
        t = x.shape[1]
        conv_state = window[:, t:]
        # The depthwise convolution as d_conv shifted multiply-adds over positions, not conv1d: the same sum, but ONNX
        # Runtime's grouped Conv (one group per channel) was the largest cost of an int8 step (docs/benchmarks.md,
        # Mamba). Positions are the window's middle dimension (so is the state's) so that each shift is a contiguous
        # block: slicing (b, d_inner, positions) along its last dimension was the next largest.
        w = self.conv1d.weight[:, 0].T  # (d_conv, d_inner)
        x = F.silu(self.conv1d.bias + sum(w[k] * window[:, k : k + t] for k in range(kernel)))  # (b, t, d_inner)
        delta, B, C = self.x_proj(x).split([self.rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta))  # (b, t, d_inner)
        A = -torch.exp(self.A_log)  # (d_inner, n)
        if selective_scan_fn is not None and x.is_cuda and state is None:  # the kernel takes no incoming h
            y, h = selective_scan_fn(x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                                     B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
                                     return_last_state=True)  # (b, d_inner, t), (b, d_inner, n)
            y = y.transpose(1, 2)
        else:
            y, h = selective_scan(x, delta, A, B, C, h)
        y = y + x * self.D
        return self.out_proj(y * F.silu(z)), (conv_state, h)


class Block(nn.Module):
    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        self.norm, self.mixer, self.drop = RMSNorm(cfg.dim, cfg.norm_eps), MambaMixer(cfg), nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, state: LayerState | None) -> tuple[torch.Tensor, LayerState]:
        h, state = self.mixer(self.norm(x), state)
        return x + self.drop(h), state


class Mamba(FlowModel):
    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__(cfg, lambda: Block(cfg))
        self.apply(self._init)

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, MambaMixer):  # Mamba's step-size initialisation: softplus(bias) log-uniform in [1e-3, 0.1]
            nn.init.uniform_(m.dt_proj.weight, -m.rank**-0.5, m.rank**-0.5)
            dt = torch.exp(torch.rand(m.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            with torch.no_grad():
                m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus

    def forward(
        self, tokens: torch.Tensor, iats: torch.Tensor, state: list[LayerState] | None = None, last_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[LayerState]]:
        """tokens, iats: (batch, t) -> next-token logits (batch, t, vocab), next-iat logits (batch, t, bins), state.

        Any t, with or without a state: a prefill continues from the state as t one-token steps would.
        last_only: the heads see the last position only, (batch, 1, ...): all that generation samples from.
        """
        x = self.embed(tokens, iats)
        new_state = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, None if state is None else state[i])
            new_state.append(s)
        return (*self.heads(x, last_only), new_state)
