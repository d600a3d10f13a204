"""torch -> ONNX: the LLaMA step graph with an explicit key/value cache, fp32 or int8 (dynamic quantization).

Graph contract (one graph serves prefill and decode):

    inputs   tokens (B, T) int64, iats (B, T) int64,
             past_key_{i}, past_value_{i} (B, heads, P, head_dim) float32 for every layer i  (P may be 0)
    outputs  logits (B, 1, V), iat_logits (B, 1, K) float32  -- the LAST position only (what the sampler needs)
             present_key_{i}, present_value_{i} (B, heads, P + T, head_dim)

Only the last position reaches the heads (Transformer.forward's last_only), so a prefill never computes logits it
throws away. A bundle's graph pads V to a multiple of 64 (`pad_vocab`) and appends a sampler (`add_sampler`).
B, T and P are dynamic. The first step feeds a zero-length past (P = 0): ONNX Runtime accepts empty tensors, so there
is no separate first-step graph. `last_only=False` keeps every position, logits (B, T, V), for parity checks.

Exported with the dynamo exporter at opset 23, which emits the fused ONNX `Attention` and `RMSNormalization` ops.
Measured with ONNX Runtime 1.32 CPU on a 2-core (shared, loaded) machine, 4 layers x dim 160, median decode step:
batch 1: 0.43 ms (opset 23) vs 0.59 ms (opset 20); batch 1024, past 48: 212 ms vs 328 ms -- 1.4-1.5x, not 2-3x here.

At opset 23 the attention is also lowered to ONNX's own `RotaryEmbedding` and `Attention` (with its past/present
inputs) instead of tracing the eager rotary halves, head transposes and cache concatenation: 189 -> 85 nodes, and at
batch 1 a decode step is dominated by per-node overhead, not arithmetic (one thread, 10-step flows: 491 -> 350 us).

Mamba (train/mamba.py) has the same graph with its recurrent state in place of the cache:

    inputs   tokens (B, 1) int64, iats (B, 1) int64,
             past_conv_{i} (B, d_conv - 1, d_inner), past_ssm_{i} (B, d_inner, d_state) float32 for every layer i
    outputs  logits (B, 1, V), iat_logits (B, 1, K), present_conv_{i}, present_ssm_{i} (same shapes as the inputs)

Only B is dynamic: the state's other dimensions are static, so the runtime starts it as zeros (runtime/engine.py).
T is 1: the graph is the recurrent step, traced once, with no ONNX `Loop` (a Mamba exported with its scan as a Loop
ran 17x slower than real time on ONNX Runtime's CPU provider, onnxruntime issue 27796). The sampler only ever feeds
one token per row per step (runtime/sampler.py: a one-token class prompt, then one token a step), so a dynamic T
would serve no caller; a longer prefix goes in as one-token steps, which is what the scan does anyway.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from ..runtime.engine import (BIAS, IAT_LOGITS, IATS, LOGITS, NEXT_IAT, NEXT_TOKEN, STATE_IN, TEMPERATURE, TOKENS,
                              UNIFORM, state_output)
from ..train.mamba import Mamba
from ..train.model import KV, Attention, Transformer, causal_mask

OPSET = 23
SAMPLER_GROUP = 64  # ids per group of the in-graph sampler (add_sampler); the token head is padded to a multiple


def io_names(model: Transformer | Mamba) -> tuple[list[str], list[str]]:
    """The step graph's inputs and outputs: two state tensors per layer, a KV cache or Mamba's (conv, ssm) state."""
    pair = ("conv", "ssm") if isinstance(model, Mamba) else ("key", "value")
    past = [f"{STATE_IN}{name}_{i}" for i in range(model.cfg.n_layers) for name in pair]
    return [TOKENS, IATS, *past], [LOGITS, IAT_LOGITS, *map(state_output, past)]


class OnnxAttention(nn.Module):
    """`Attention` written with torch.onnx.ops, which export as the opset-23 `RotaryEmbedding` and `Attention` nodes
    (and compute the same in eager mode). Same weights, same contract: the parity tests compare it with torch."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KV) -> tuple[torch.Tensor, KV]:
        a, (b, t, _) = self.attn, x.shape
        q, k, v = a.wqkv(x).chunk(3, dim=-1)  # (b, t, heads * head_dim) each: the layout of Attention's view
        cos, sin = cos.expand(b, t, -1), sin.expand(b, t, -1)
        q = torch.onnx.ops.rotary_embedding(q, cos, sin, num_heads=a.n_heads)
        k = torch.onnx.ops.rotary_embedding(k, cos, sin, num_heads=a.n_heads)
        mask = causal_mask(t, past[0].shape[2])
        y, key, value, _ = torch.onnx.ops.attention(q, k, v, mask, past[0], past[1], q_num_heads=a.n_heads,
                                                   kv_num_heads=a.n_heads)
        return a.wo(y), (key, value)


def lowered(model: Transformer) -> Transformer:
    """A copy of `model` whose attention exports as single ONNX ops (opset 23 and later)."""
    model = copy.deepcopy(model)
    for block in model.layers:
        block.attn = OnnxAttention(block.attn)
    return model


class StepGraph(nn.Module):
    """Flat-argument wrapper of Transformer.forward (and Mamba.forward) for export: past as 2 x n_layers tensors (each
    layer's key and value, or its conv window and SSM state), present likewise."""

    def __init__(self, model: Transformer | Mamba, last_only: bool = True) -> None:
        super().__init__()
        self.model, self.last_only = model, last_only

    def forward(self, tokens: torch.Tensor, iats: torch.Tensor, *past: torch.Tensor):
        kv = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        # Last only, the outputs stay (B, 1, V): the head's MatMul then writes the graph output itself, where squeezing
        # it to (B, V) copied all of it into a new output buffer (4% of a batch-1024 step).
        logits, iat_logits, present = self.model(tokens, iats, kv, last_only=self.last_only)
        return (logits, iat_logits, *(t for k_v in present for t in k_v))


def pad_vocab(model: Transformer | Mamba, multiple: int) -> Transformer | Mamba:
    """A copy of `model` whose token table has zero rows up to a multiple of `multiple` ids (as nanoGPT pads GPT-2's).

    The padding ids are never fed (no token maps to them) and never drawn (the bundle's sampler bans them), so the
    model is unchanged; the in-graph sampler's groups then tile the vocabulary without a per-step pad of the logits.
    """
    vocab = -(-model.cfg.vocab_size // multiple) * multiple
    if vocab == model.cfg.vocab_size:
        return model
    model = copy.deepcopy(model)
    pad = vocab - model.cfg.vocab_size
    if model.cfg.head_size:  # the padding ids are <PAD>'s output (0) in and out
        model.head_of = torch.cat([model.head_of, model.head_of.new_zeros(pad)])
        model.head_logp = torch.cat([model.head_logp, model.head_logp.new_zeros(pad)])
    else:
        w = model.tok_emb.weight.detach()
        model.tok_emb = nn.Embedding.from_pretrained(torch.cat([w, w.new_zeros(pad, w.shape[1])]), freeze=True)
    model.cfg = dataclasses.replace(model.cfg, vocab_size=vocab)
    return model


def example_inputs(model: Transformer | Mamba, batch: int = 2, t: int = 3,
                   past_len: int = 4) -> tuple[torch.Tensor, ...]:
    """Trace inputs; sizes >= 2 and distinct so that the exporter keeps every dimension symbolic (Mamba: t = 1)."""
    c = model.cfg
    g = torch.Generator().manual_seed(0)
    if isinstance(model, Mamba):
        t = 1
        past = [torch.randn(batch, *((c.d_conv - 1, c.d_inner) if j % 2 == 0 else (c.d_inner, c.d_state)), generator=g)
                for j in range(2 * c.n_layers)]
    else:
        past = [torch.randn(batch, c.n_heads, past_len, c.head_dim, generator=g) for _ in range(2 * c.n_layers)]
    tokens = torch.randint(0, c.vocab_size, (batch, t), generator=g)
    iats = torch.randint(0, c.iat_bins, (batch, t), generator=g)
    return (tokens, iats, *past)


def export_onnx(model: Transformer | Mamba, path: str | Path, opset: int = OPSET, last_only: bool = True) -> Path:
    """Write the step graph of `model` (fp32, weights embedded) to `path`."""
    path = Path(path)
    model = model.float().cpu().eval()
    inputs, outputs = io_names(model)
    batch = torch.export.Dim("batch")
    if isinstance(model, Mamba):  # one token per step, only the batch dynamic (module docstring)
        wrapper = StepGraph(model, last_only).eval()
        shapes = {"tokens": {0: batch}, "iats": {0: batch},
                  "past": tuple({0: batch} for _ in range(2 * model.cfg.n_layers))}
    else:
        wrapper = StepGraph(lowered(model) if opset >= 23 else model, last_only).eval()
        max_len = model.cfg.block_size
        # P + T <= block_size (the rope table's length); the bounds let the exporter prove the slice in range.
        seq = torch.export.Dim("seq", min=1, max=max_len)
        past = torch.export.Dim("past", min=0, max=max_len - 1)
        shapes = {"tokens": {0: batch, 1: seq}, "iats": {0: batch, 1: seq},  # StepGraph.forward's arguments
                  "past": tuple({0: batch, 2: past} for _ in range(2 * model.cfg.n_layers))}
    with torch.no_grad(), warnings.catch_warnings():
        # the exporter's notes on axis renaming and pytree deprecations: noise for this fixed, tested graph
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # and its registry's "torchvision is not installed. Skipping torchvision::nms" (we use no torchvision op)
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
        prog = torch.onnx.export(
            wrapper, example_inputs(model), dynamo=True, opset_version=opset, input_names=inputs,
            output_names=outputs, dynamic_shapes=shapes, external_data=False, optimize=True, verbose=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    prog.save(str(path))
    return path


# Which ops quantize_dynamic may rewrite: MatMul (-> DynamicQuantizeLinear + MatMulInteger: int8 weights, activations
# quantized to uint8 on the fly per call, fp32 out) and Gather (the embedding tables stored int8; the tied token head
# reads the same int8 table through a dequantize). Not the default list: it includes "Attention", and the quantizer
# matches that op type without checking the domain, so it takes the opset-23 ONNX Attention node for the
# com.microsoft contrib op and rewrites it to QAttention, feeding the key/value cache tensors in as quantized
# "weights": ONNX Runtime then refuses the model (INVALID_GRAPH, a uint8 cache where QAttention expects fp32).
# Attention itself has no weights, so nothing is lost; the key/value cache stays fp32 as in the fp32 graph.
# Measured on a 1.5 M-parameter run (4 layers, dim 160), real test flows, stepwise: 6.3 MB -> 1.76 MB (1.63 MB with
# int8_tied_head), max |logit diff| 0.12-0.58, mean KL(torch || int8) 1e-4-5e-4, argmax agreement 0.988-1.000.
# per_channel / reduce_range / MatMulNBits 8-bit were no better than this within noise (MatMulNBits: diff 0.012 but
# 3.4 MB).
INT8_OP_TYPES = ["MatMul", "Gather"]
TOKEN_TABLE = "model.tok_emb.weight"


def int8_tied_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """Let the tied token head read the 8-bit table directly instead of dequantizing all of it on every step.

    quantize_dynamic stores the token table once in 8 bits (uint8 + zero point) for its Gather, and feeds the head
    MatMul a DequantizeLinear + Transpose of the whole table: 0.5 M values turned back into fp32 per step, which at
    batch 1 cost more than the four layers together. Here the head becomes the quantizer's own integer pattern
    (DynamicQuantizeLinear -> MatMulInteger -> scale) on a Transpose of the 8-bit table. That Transpose has only a
    constant input, so ONNX Runtime folds it once when the session loads: the file keeps one (vocab, dim) table, which
    the embedding gathers whole rows from. (Storing it transposed instead made the embedding gather single bytes
    across the table: 1.5 ms of a 35 ms step at batch 1024.)
    """
    g = model.graph
    q_name, scale, zero = f"{TOKEN_TABLE}_quantized", f"{TOKEN_TABLE}_scale", f"{TOKEN_TABLE}_zero_point"
    transposes = [n for n in g.node if TOKEN_TABLE in n.input and n.op_type == "Transpose"]
    if not transposes:  # the exporter folded the Transpose of a table under 8,192 values: the head has its own copy
        return model
    (transpose,) = transposes
    (deq,) = [n for n in g.node if q_name in n.input and n.op_type == "DequantizeLinear"]
    (head,) = [n for n in g.node if transpose.output[0] in n.input and n.op_type == "MatMul"]
    x = head.input[0]
    int_head = [
        helper.make_node("Transpose", [q_name], ["head_table"], perm=[1, 0], name="head_table"),
        helper.make_node("DynamicQuantizeLinear", [x], [f"{x}_q", f"{x}_q_scale", f"{x}_q_zero"], name="head_quantize"),
        helper.make_node("MatMulInteger", [f"{x}_q", "head_table", f"{x}_q_zero", zero], ["head_int32"],
                         name="head_matmul"),
        helper.make_node("Cast", ["head_int32"], ["head_fp32"], to=onnx.TensorProto.FLOAT, name="head_cast"),
        helper.make_node("Mul", [f"{x}_q_scale", scale], ["head_scale"], name="head_scales"),
        helper.make_node("Mul", ["head_fp32", "head_scale"], [head.output[0]], name="head_rescale"),
    ]
    nodes = []
    for n in g.node:
        if n is head:
            nodes += int_head
        elif n is not deq and n is not transpose:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model


def gather_head_columns(model: onnx.ModelProto) -> onnx.ModelProto:
    """Let a factorised head (train/model.py) gather its weight's columns once, not its logits on every step.

    The model scores a few hundred outputs, then copies each id's logit out of them, `scores[..., head_of]`: a Gather
    along the last axis that writes the (B, vocab) logits one value at a time, slower than the exact head's whole
    matmul. Here the head's (dim, outputs) weight is gathered by `head_of` instead, a node with constant inputs only,
    which ONNX Runtime folds once when the session loads; the matmul then writes the per-id logits itself, as the
    exact head's does, and the file keeps the small table. Works on the fp32 graph and on int8_tied_head's (a
    per-tensor zero point stays valid for any subset of columns). A graph without that Gather is returned unchanged.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    weights = {i.name for i in g.initializer}
    add = producer[LOGITS]  # logits = scores[..., head_of] + log P(id | output)
    gather = next((producer[i] for i in add.input if i in producer and producer[i].op_type == "Gather"), None)
    if add.op_type != "Add" or gather is None:
        return model
    path, head = [], producer[gather.input[0]]  # back from the scores to the matmul (int8: through its rescale)
    while head.op_type not in ("MatMul", "MatMulInteger"):
        path.append(head)
        head = producer[next(i for i in head.input if i not in weights and i in producer)]
    columns = helper.make_node("Gather", [head.input[1], gather.input[1]], ["head_weight_per_id"], axis=1,
                               name="head_weight_per_id")
    head.input[1] = "head_weight_per_id"
    add.input[list(add.input).index(gather.output[0])] = gather.input[0]
    nodes = []
    for n in g.node:
        if n is head:
            nodes.append(columns)
        if n is not gather:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    # the exporter's recorded shapes of the scores (B, 1, outputs) no longer hold: ONNX Runtime infers them again
    stale = {head.output[0], gather.output[0], *(o for n in path for o in n.output)}
    kept = [v for v in g.value_info if v.name not in stale]
    del g.value_info[:]
    g.value_info.extend(kept)
    return model


def _heads_input(g: onnx.GraphProto) -> onnx.NodeProto:
    """The final norm, whose output both heads read: the last node before both head outputs that scales by a weight
    (RMSNorm). Found by structure, not by the weight's name: the exporter renames a weight it merges with
    an equal one (the still all-ones norms of an untrained model), and int8 adds nodes between the norm and the heads."""
    producer = {o: n for n in g.node for o in n.output}
    position = {n.name or n.output[0]: i for i, n in enumerate(g.node)}
    weights = {i.name for i in g.initializer}

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            t = todo.pop()
            if t not in seen and t in producer:
                seen.add(t)
                todo.extend(producer[t].input)
        return seen

    # RMSNormalization from opset 23; Mul, its last step, where a norm is decomposed
    scaled = [producer[t] for t in ancestors(LOGITS) & ancestors(IAT_LOGITS)
              if producer[t].op_type in ("RMSNormalization", "Mul") and any(i in weights for i in producer[t].input)]
    if not scaled:
        raise ValueError("no final norm feeding both heads in the graph")
    return max(scaled, key=lambda n: position[n.name or n.output[0]])


def add_sampler(model: onnx.ModelProto, vocab: int, group: int = SAMPLER_GROUP) -> onnx.ModelProto:
    """Append the sampler to a step graph: the next packet token and inter-arrival bin, drawn inside the graph.

    New inputs: uniform (B, 2) float32 in [0, 1) -- one per row for the token, one for the bin, drawn by the caller --,
    temperature (scalar) and bias (vocab,) added to the logits (-inf = forbidden). New outputs: next_token, next_iat
    (B,) int64. The rule is runtime/sampler.py's `sample` (the first id whose cumulative probability exceeds u x total),
    so given the same uniforms both pick the same ids; only a u within float rounding of a boundary can differ.

    At batch 1024 the numpy sampler cost about as much as the model step (a cumulative sum over 1024 x 3,000 logits,
    then a compare over all of it). Here the vocabulary is cut into groups of `group` ids: one softmax, one sum per
    group, a cumulative sum over the ~50 group totals picks the group, and a cumulative sum over that group's 64
    probabilities picks the id -- every pass over the full logits is one that ONNX Runtime vectorises and threads.
    Measured at batch 1024 (int8, 10-packet flows, this 2-core CPU): 1,411-1,493 -> 1,934-2,047 flows/s.

    The graph's token table must be padded to whole groups (`pad_vocab`); the padding ids get a bias of -inf here.
    The temperature divides the final hidden state, not the logits: both heads are linear without a bias, so that is
    the same division on dim (160) numbers per row instead of vocab (3,072), and the int8 head quantizes h / T to the
    same integers at a scale T times smaller (a factorised head's per-id log shares, its one bias, are divided apart).
    The `logits` and `iat_logits` outputs are divided by the temperature too.
    """
    g = model.graph
    out_shape = {o.name: o for o in g.output}
    padded = out_shape[LOGITS].type.tensor_type.shape.dim[2].dim_value
    if padded % group or not 0 <= padded - vocab < group:
        raise ValueError(f"token head of {padded} ids: expected the {vocab}-id vocabulary padded to a multiple of "
                         f"{group} (export/onnx.py pad_vocab)")
    n_groups = padded // group
    c = {}  # constants

    def const(name: str, value) -> str:
        c[name] = numpy_helper.from_array(np.asarray(value), f"sampler_const_{name}")
        return f"sampler_const_{name}"

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        g.node.append(helper.make_node(op, inputs, [f"sampler_{name}"], name=f"sampler_{name}", **attrs))
        return f"sampler_{name}"

    def pick(cdf: str, target: str, limit: int, name: str) -> str:
        """count(cdf <= target) along axis 1, at most `limit`: the inverse-CDF index, (B, 1) int64."""
        le = node("Cast", [node("LessOrEqual", [cdf, target], f"{name}_le")], f"{name}_count",
                  to=onnx.TensorProto.INT64)
        return node("Min", [node("ReduceSum", [le, const("axis1", [1])], f"{name}_sum", keepdims=1),
                            const(f"{name}_limit", np.int64(limit))], name)

    def total(cdf: str, name: str) -> str:  # the last column, (B, 1)
        return node("Slice", [cdf, const("minus1", [-1]), const("big", [1 << 62]), const("axis1", [1])], name)

    norm = _heads_input(g)
    hidden = norm.output[0]
    for n in g.node:
        n.input[:] = [f"{hidden}_scaled" if i == hidden else i for i in n.input]
    scale = helper.make_node("Div", [hidden, TEMPERATURE], [f"{hidden}_scaled"], name="sampler_temperature")
    g.node.insert(list(g.node).index(norm) + 1, scale)
    # A factorised head adds log P(id | bucket) to the linear logits (train/model.py): a bias, which the temperature
    # must divide too, as the numpy sampler divides the whole logit.
    weights = {i.name for i in g.initializer}
    for add in [n for n in g.node if n.op_type == "Add" and LOGITS in n.output]:
        for k, i in enumerate(add.input):
            if i in weights:
                add.input[k] = f"{i}_scaled"
                g.node.insert(list(g.node).index(add), helper.make_node(
                    "Div", [i, TEMPERATURE], [f"{i}_scaled"], name="sampler_temperature_bias"))
    u_tok = node("Slice", [UNIFORM, const("zero", [0]), const("one", [1]), const("axis1", [1])], "u_tok")
    u_iat = node("Slice", [UNIFORM, const("one", [1]), const("two", [2]), const("axis1", [1])], "u_iat")

    logits = node("Squeeze", [LOGITS, const("axis1", [1])], "logits")  # (B, V): not a graph output, so no copy
    bias = node("Concat", [BIAS, const("pad_bias", np.full(padded - vocab, -np.inf, np.float32))], "bias", axis=0)
    p = node("Softmax", [node("Add", [logits, bias], "biased")], "softmax", axis=-1)
    p = node("Reshape", [p, const("grouped", [0, n_groups, group])], "p")
    sums = node("ReduceSum", [p, const("axis2", [2])], "group_sums", keepdims=0)  # (B, G)
    cdf = node("CumSum", [sums, const("axis1_scalar", np.int64(1))], "group_cdf")
    target = node("Mul", [u_tok, total(cdf, "total")], "target")
    grp = pick(cdf, target, n_groups - 1, "group")  # (B, 1)
    before = node("Sub", [node("GatherElements", [cdf, grp], "cdf_at", axis=1),
                          node("GatherElements", [sums, grp], "sum_at", axis=1)], "before")
    inner = node("CumSum", [node("GatherND", [p, grp], "block", batch_dims=1), const("axis1_scalar", np.int64(1))],
                 "block_cdf")  # (B, group)
    idx = pick(inner, node("Sub", [target, before], "rest"), group - 1, "inner")
    token = node("Add", [node("Mul", [grp, const("group_size", np.int64(group))], "base"), idx], "id")
    token = node("Min", [token, const("last_id", np.int64(vocab - 1))], "id_clamped")

    pi = node("Softmax", [node("Squeeze", [IAT_LOGITS, const("axis1", [1])], "iat_logits")], "iat_p", axis=-1)
    icdf = node("CumSum", [pi, const("axis1_scalar", np.int64(1))], "iat_cdf")
    n_bins = out_shape[IAT_LOGITS].type.tensor_type.shape.dim[2].dim_value
    ibin = pick(icdf, node("Mul", [u_iat, total(icdf, "iat_total")], "iat_target"), n_bins - 1, "iat_bin")

    g.node.append(helper.make_node("Squeeze", [token, const("axis1", [1])], [NEXT_TOKEN], name="sampler_next_token"))
    g.node.append(helper.make_node("Squeeze", [ibin, const("axis1", [1])], [NEXT_IAT], name="sampler_next_iat"))
    g.initializer.extend(c.values())
    f32 = onnx.TensorProto.FLOAT
    g.input.extend([helper.make_tensor_value_info(UNIFORM, f32, ["batch", 2]),
                    helper.make_tensor_value_info(TEMPERATURE, f32, []),
                    helper.make_tensor_value_info(BIAS, f32, [vocab])])
    g.output.extend([helper.make_tensor_value_info(n, onnx.TensorProto.INT64, ["batch"])
                     for n in (NEXT_TOKEN, NEXT_IAT)])
    return model


def quantize_int8(src: str | Path, dst: str | Path, op_types: list[str] | None = None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # it advises "pre-processing" (shape inference) on the root logger
    try:
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=op_types or INT8_OP_TYPES,
                         weight_type=QuantType.QInt8, per_channel=False, reduce_range=False)
    finally:
        logging.getLogger().setLevel(quiet)
    model = int8_tied_head(onnx.load(str(dst)))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
