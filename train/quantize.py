"""Post-training int8 quantization of a trained run with torchao, stored pickle-free.

Schemes (torchao `quantize_` with its *Config API, per-row symmetric int8 weights):

- int8-wo: `Int8WeightOnlyConfig` -- int8 weights, fp32 activations (weights are widened at every matmul).
- int8-da: `Int8DynamicActivationInt8WeightConfig` -- activations quantized per row at run time, int8 x int8 matmul.

Every nn.Linear (attention qkv/out, SwiGLU w13/w2, Mamba's in/x/dt/out projections, the iat head) is quantized, and so is the tied token matrix: the
token head is `F.linear(x, tok_emb.weight)` and that matrix is a third of the parameters (3044 x 160 of ~1.5 M), so
leaving it fp32 would keep the run at ~3 MB. It is quantized once, per row (one scale per token): the same int8 rows
serve the head (per-output-channel scales, torchao's linear kernel) and the embedding lookup (gather int8 rows and
their scales, dequantize only the looked-up rows). Nothing is duplicated.

A quantized run directory ("QRUN") is a run directory: `model.safetensors` holds every quantized weight as two plain
tensors, `<name>.qdata` (int8) and `<name>.scale` (fp32, one per row), beside the unquantized norms and iat
embedding; `config.yaml` holds the source run's config plus `quantization: {scheme, tensors}`. So the on-disk size is
the true int8 size, and loading needs no pickle: the weights are put back into torchao's own `Int8Tensor`s.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.tokenizer import Tokenizer

SCHEMES = ("int8-wo", "int8-da")


def _torchao():
    """Import torchao quietly: it logs failures to load its CUDA-only extensions on CPU machines."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao.quantization as q
    finally:
        logging.disable(level)
    return q


def _config(scheme: str):
    q = _torchao()
    if scheme == "int8-wo":
        return q.Int8WeightOnlyConfig(set_inductor_config=False)
    if scheme == "int8-da":
        return q.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    raise ValueError(f"unknown scheme {scheme!r}; one of {', '.join(SCHEMES)}")


class TiedInt8Embedding(nn.Module):
    """The tied token matrix as one torchao Int8Tensor: `weight` feeds F.linear (the head), lookups gather rows."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.weight
        return w.qdata[ids].to(w.dtype) * w.scale[ids].to(w.dtype)  # scale: (vocab, 1) -> (..., 1)


def _quantize_tied(model: nn.Module, scheme: str) -> None:
    """Both architectures (train/model.py, train/mamba.py) name their tied token matrix `tok_emb`."""
    q = _torchao()
    head = nn.Linear(model.cfg.dim, len(model.tok_emb.weight), bias=False)  # vocab, or a factorised head's outputs
    head.weight = nn.Parameter(model.tok_emb.weight.detach().clone(), requires_grad=False)
    q.quantize_(head, _config(scheme))
    model.tok_emb = TiedInt8Embedding(head.weight.data)


def quantize_model(model: nn.Module, scheme: str, embedding: bool = True) -> nn.Module:
    """A quantized copy of `model` (eval mode, CPU); `embedding=False` leaves the tied token matrix fp32."""
    model = copy.deepcopy(model).cpu().eval()
    _torchao().quantize_(model, _config(scheme))  # default filter: every nn.Linear
    if embedding:
        _quantize_tied(model, scheme)
    return model


def int8_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if hasattr(p, "qdata")]


def flat_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with every Int8Tensor split into plain `<name>.qdata` (int8) and `<name>.scale` (fp32)."""
    out = {}
    for name, t in model.state_dict().items():
        if hasattr(t, "qdata"):
            if getattr(t, "zero_point", None) is not None and bool(t.zero_point.any()):
                raise ValueError(f"{name}: asymmetric int8 is not supported by this format")
            out[f"{name}.qdata"] = t.qdata.detach().contiguous().cpu()
            out[f"{name}.scale"] = t.scale.detach().contiguous().cpu()
        else:
            out[name] = t.detach().contiguous().cpu()
    return out


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def restore_int8(model: nn.Module, state: dict[str, torch.Tensor], names: list[str], source: str) -> None:
    """Put stored int8 rows and scales (`<name>.qdata`, `<name>.scale`) back into a quantized skeleton, then the rest
    of `state`; ValueError naming `source` where they do not fit."""
    if set(int8_names(model)) != set(names):
        raise ValueError(f"{source}: stored int8 tensors do not match the scheme")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            p = params[name]
            qd, sc = state.pop(f"{name}.qdata", None), state.pop(f"{name}.scale", None)
            if qd is None or sc is None or qd.shape != p.qdata.shape or sc.numel() != p.scale.numel():
                raise ValueError(f"{source}: {name}: stored int8 tensor missing or of the wrong shape")
            p.qdata, p.scale = qd, sc.reshape(p.scale.shape).to(p.scale.dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in names]
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit the config (missing {missing}, unexpected {unexpected})")
    model.eval()


@torch.inference_mode()
def logits_error(ref: nn.Module, q: nn.Module, tok: Tokenizer, n: int = 64, seed: int = 0) -> dict:
    """Max |logit difference| and top-1 agreement of `q` vs `ref` on random class-prefixed packet sequences."""
    g = torch.Generator().manual_seed(seed)
    t = min(tok.block_size - 1, 12)
    toks = torch.randint(tok.packet_base, tok.packet_end, (n, t), generator=g)
    toks[:, 0] = torch.randint(tok.packet_base - tok.n_classes, tok.packet_base, (n,), generator=g)
    bins = torch.randint(0, tok.iat_bins, (n, t), generator=g)
    a, ai, _ = ref.cpu().eval()(toks, bins)
    b, bi, _ = q(toks, bins)
    pa, pb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    kl = (pa.exp() * (pa - pb)).sum(-1).mean()
    return {"max_abs_logit_err": float((a - b).abs().max()), "logit_scale": float(a.abs().max()),
            "top1_agree": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
            "iat_max_abs_err": float((ai - bi).abs().max()), "kl_nats": float(kl)}
