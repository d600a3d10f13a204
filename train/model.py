"""A LLaMA-style decoder over flow tokens: RMSNorm, rotary positions, SwiGLU, causal attention.

Each position embeds a packet token plus its inter-arrival bin, and predicts the next packet token and the next
inter-arrival bin. Attention takes and returns an explicit key/value cache (`past` -> `present`), so the one forward
serves training (no past), batched generation (one token per step) and the ONNX step graph (export/onnx.py).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.settings import ModelConfig

KV = tuple[torch.Tensor, torch.Tensor]  # (batch, heads, past_len, head_dim) each


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / cfg.rope_base ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    angles = torch.outer(torch.arange(cfg.block_size).float(), inv)  # (block, head_dim/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Rotate pairs (x1, x2) = the two halves of the head dimension (the "rotate_half" layout).
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def causal_mask(t: int, past_len: int, device: torch.device | None = None) -> torch.Tensor:
    """(t, past_len + t) bool: query i sits at absolute position past_len + i and may see keys 0 .. past_len + i."""
    return torch.arange(t, device=device)[:, None] + past_len >= torch.arange(past_len + t, device=device)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = cfg.n_heads, cfg.head_dim, cfg.dropout
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KV | None) -> tuple[torch.Tensor, KV]:
        b, t, _ = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        mask = causal_mask(t, k.shape[2] - t, x.device)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.wo(y.transpose(1, 2).reshape(b, t, -1)), (k, v)


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)  # gate and up projections in one matmul
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps), RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn, self.ffn = Attention(cfg), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KV | None) -> tuple[torch.Tensor, KV]:
        h, present = self.attn(self.attn_norm(x), cos, sin, past)
        x = x + self.drop(h)
        return x + self.drop(self.ffn(self.ffn_norm(x))), present


class FlowModel(nn.Module):
    """What every generator shares around its layers: a packet token plus its inter-arrival bin embedded at each
    position, and two heads, the next packet token (tied to the token embedding: most of the parameters at this size)
    and the next inter-arrival bin.

    With `cfg.head_size` the model works on head outputs, not ids (runtime/lengths.py `LengthHead`): each special and
    class id is an output of its own, the packet ids of one (direction, length bucket) share one. The token table has
    a row per output; an id is embedded as its output's row, and its logit is its output's plus log P(id | output), a
    table of the training lengths. The model sees buckets only, in training as in generation (fed exact lengths, it
    learnt them as class signatures, then was fed lengths drawn class-blind from the table), and the head scores a few
    hundred outputs instead of every id."""

    def __init__(self, cfg, block: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.head_size or cfg.vocab_size, cfg.dim)
        if cfg.head_size:
            self.register_buffer("head_of", torch.zeros(cfg.vocab_size, dtype=torch.int32))  # (vocab,) id -> output
            self.register_buffer("head_logp", torch.zeros(cfg.vocab_size))  # (vocab,) log P(id | its output)
        self.iat_emb = nn.Embedding(cfg.iat_bins, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(block() for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.iat_head = nn.Linear(cfg.dim, cfg.iat_bins, bias=False)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_head(self, head_of: torch.Tensor, head_logp: torch.Tensor) -> None:
        """Install the tables of a factorised head (runtime/lengths.py `LengthHead`)."""
        with torch.no_grad():
            self.head_of.copy_(head_of)
            self.head_logp.copy_(head_logp)

    def embed(self, tokens: torch.Tensor, iats: torch.Tensor) -> torch.Tensor:
        rows = self.head_of[tokens] if self.cfg.head_size else tokens
        return self.drop(self.tok_emb(rows) + self.iat_emb(iats))  # (batch, t) -> (batch, t, dim)

    def heads(self, x: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, t, dim) -> token logits (batch, t, vocab), iat logits (batch, t, bins); t = 1 with last_only."""
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        logits = F.linear(x, self.tok_emb.weight)  # (batch, t, head_size or vocab)
        if self.cfg.head_size:
            logits = logits.index_select(-1, self.head_of) + self.head_logp
        return logits, self.iat_head(x)


class Transformer(FlowModel):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, lambda: Block(cfg))
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(
        self, tokens: torch.Tensor, iats: torch.Tensor, past: list[KV] | None = None, last_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[KV]]:
        """tokens, iats: (batch, t) -> next-token logits (batch, t, vocab), next-iat logits (batch, t, bins), cache.

        last_only: the heads see the last position only, (batch, 1, ...): all that generation samples from.
        """
        t = tokens.shape[1]
        start = 0 if past is None else past[0][0].shape[2]
        cos, sin = self.rope_cos[start : start + t], self.rope_sin[start : start + t]
        x = self.embed(tokens, iats)
        present = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, None if past is None else past[i])
            present.append(kv)
        return (*self.heads(x, last_only), present)
