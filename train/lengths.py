"""Neighbouring payload lengths share statistics in a token table while training (`share_lengths`); the factorised
head that scores length buckets instead is runtime/lengths.py.

A packet token is an exact (direction, length). With 20-50 flows per class most lengths occur once or never, and a
free embedding row per length learns each on its own. Here a token's row is a sum: its own row plus one coarse row
per scale, shared by every length of the same direction in the same bucket of `4**s` bytes (s = 1 .. scales):

    row(dir, len) = fine[dir, len] + sum_s coarse_s[dir, len // 4**s]        # (dim,)

The table is tied to the output head, so the logits of neighbouring lengths move together, and weight decay leaves a
length its own row only where the data pays for it. The sum is linear, so the weight average of training averages it
too, and `plain_state` writes the summed table as `tok_emb.weight`: the tokenizer stays exact, and export, int8 and
the runtime see the same model as without sharing.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..runtime.tokenizer import Tokenizer

SCALE_BASE = 4  # bucket widths 4, 16, 64, ... bytes


def bucket_ids(tok: Tokenizer, scale: int) -> torch.Tensor:
    """(vocab,) each id's row in the coarse table of width SCALE_BASE**scale; other ids (special, class, length) get
    a row each: before the packets' rows, or after them."""
    ids = torch.arange(tok.vocab_size)
    off = ids - tok.packet_base
    down = off > tok.max_len
    length = torch.where(down, off - tok.max_len - 1, off)
    per_dir = tok.max_len // SCALE_BASE**scale + 1
    packet_row = tok.packet_base + down.long() * per_dir + length // SCALE_BASE**scale
    after = tok.packet_base + 2 * per_dir + ids - tok.packet_end
    return torch.where(ids < tok.packet_base, ids, torch.where(tok.is_packet(ids), packet_row, after))


class SharedLengths(nn.Module):
    """The parametrization: fine table (vocab, dim) -> fine + coarse rows of the token's buckets."""

    def __init__(self, tok: Tokenizer, dim: int, scales: int) -> None:
        super().__init__()
        groups = [bucket_ids(tok, s) for s in range(1, scales + 1)]
        self.register_buffer("groups", torch.stack(groups), persistent=False)  # (scales, vocab)
        # zero at the start: the model begins as the plain one, and the buckets grow from the summed gradients
        self.coarse = nn.ParameterList(nn.Parameter(torch.zeros(int(g.max()) + 1, dim)) for g in groups)

    def forward(self, fine: torch.Tensor) -> torch.Tensor:
        return fine + sum(table[g] for table, g in zip(self.coarse, self.groups))


def share_lengths(model: nn.Module, tok: Tokenizer, scales: int) -> None:
    """Make the model's token table (`tok_emb`, both architectures) a shared-length sum; 0 scales = leave it plain."""
    if scales:
        parametrize.register_parametrization(model.tok_emb, "weight",
                                             SharedLengths(tok, model.tok_emb.weight.shape[1], scales))


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state a plain model of the same config loads: the summed table as `tok_emb.weight`."""
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    if parametrize.is_parametrized(model.tok_emb):
        state["tok_emb.weight"] = model.tok_emb.weight
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def plain_params(model: nn.Module) -> int:
    """Parameters of the plain model (shared rows folded into the table); buffers such as a factorised head's id
    tables are not parameters."""
    buffers = {name for name, _ in model.named_buffers()}
    return sum(v.numel() for k, v in plain_state(model).items() if k not in buffers)
