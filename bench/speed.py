"""`ntg-edge bench speed`: flows per second of every engine variant, and the same weights in a peer's stack.

Each variant generates fixed-length flows (10 packets = 10 decode steps after the one-token class prompt) through the
shared sampler (runtime/sampler.py) at batch 1, 64 and 1024, all variants in interleaved rounds (`run_speed` says
why). Reported per variant and batch: ms per flow,
flows/s, the share of wall time spent inside the engine's step (the rest is the numpy sampler and Python; the ONNX
bundles sample inside their graph, so for them it includes sampling), and weight bandwidth as gpt-fast reports it
(bytes on disk x forward steps / s; a step reads every weight once, whatever the batch, so it is only meaningful at
batch 1). Peak memory is the growth of the process's peak resident set
(VmHWM, reset before each variant through /proc/self/clear_refs) over its resident set before the variant was
opened; where that reset is not possible, the process's ru_maxrss is reported instead and says so.

Peer: Hugging Face transformers `LlamaForCausalLM` from a LlamaConfig of the same shape, our weights mapped in
(wqkv -> q/k/v_proj, w13 -> gate/up_proj, tied embedding). The inter-arrival embedding and head have no HF
equivalent, so the peer generates packet-token sequences only (one fewer input embedding add and no second head),
with `.generate()`, 10 new tokens, plain sampling -- what the reference study most likely ran -- at every batch size:
one-token prompts batch without padding.
"""

from __future__ import annotations

import dataclasses
import os
import resource
from functools import partial
import time
from pathlib import Path

import numpy as np

from ..runtime.engine import Engine, State
from ..runtime.sampler import Sampling, generate, spread
from ..runtime.tokenizer import EOS, PAD, Tokenizer
from .variants import ALL, Variant

BATCHES = (1, 64, 1024)
LENGTH = 10
PEER = "peer HF llama fp32"
TARGETS = {"onnx_int8_flows_s_b1024": 5000.0, "ms_per_flow_b1": 1.5, "int8_bundle_mb": 2.0}  # printed, not asserted


# -- memory -----------------------------------------------------------------------------------------------------------
def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak RSS growth over a block (VmHWM reset via clear_refs), else the process's ru_maxrss."""

    def __enter__(self) -> "PeakMemory":
        self.method = "vmhwm"
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "ru_maxrss"
        self.base_kb = _status_kb("VmRSS") or 0
        return self

    def __exit__(self, *exc) -> None:
        hwm = _status_kb("VmHWM") if self.method == "vmhwm" else None
        if hwm is None:
            self.method = "ru_maxrss"
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        else:
            self.peak_mb = max(0, hwm - self.base_kb) / 1024


# -- timing -----------------------------------------------------------------------------------------------------------
class Timed:
    """An Engine that adds up the seconds spent inside the engine it wraps (in its in-graph sampler too)."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.seconds = engine, 0.0
        self.samples, self.provider = engine.samples, engine.provider

    def _timed(self, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - t
        return out

    def step(self, *args):
        return self._timed(self.engine.step, *args)

    def sample_step(self, *args):
        return self._timed(self.engine.sample_step, *args)

    def select(self, state: State, rows: np.ndarray) -> State:
        return self.engine.select(state, rows)


def time_generation(engine: Engine, tok: Tokenizer, batch: int, n_flows: int, length: int = LENGTH, seed: int = 0,
                    bar=None) -> dict:
    """Seconds to generate `n_flows` fixed-length flows at `batch` (the engine already warm), and those inside it."""
    timed = Timed(engine)
    n = 0
    t0 = time.perf_counter()
    for flows in generate(timed, tok, spread(tok.classes, n_flows), Sampling(), batch, seed, length):
        n += len(flows)
        assert all(len(f.pl) == length for f in flows)
        if bar is not None:
            bar.update(len(flows))
    return {"flows": n, "seconds": time.perf_counter() - t0, "engine_seconds": timed.seconds}


def warm_up(engine: Engine, tok: Tokenizer, batch: int, length: int = LENGTH) -> None:
    """One full batch: session/graph initialisation, the allocator's high-water mark (which PeakMemory records)."""
    for _ in generate(engine, tok, spread(tok.classes, batch), Sampling(), batch, 10**6, length):
        pass


# -- the peer: Hugging Face LlamaForCausalLM -------------------------------------------------------------------------
def hf_llama(model):
    """LlamaForCausalLM of our shape with our weights (no iat embedding/head: it has no equivalent there). A factorised
    head's table is expanded to a row per id (each id its bucket's row): the study's exact head, with our weights; only
    the per-id log shares inside buckets have no place there."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.cfg
    table = model.tok_emb.weight[model.head_of.long()] if c.head_size else model.tok_emb.weight
    hc = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_dim,
                     num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_heads,
                     max_position_embeddings=c.block_size, rms_norm_eps=c.norm_eps, rope_theta=c.rope_base,
                     tie_word_embeddings=True, hidden_act="silu", attention_bias=False, mlp_bias=False,
                     bos_token_id=None, eos_token_id=EOS, pad_token_id=PAD, attention_dropout=0.0)
    hf = LlamaForCausalLM(hc).eval()
    d = c.dim
    sd = {"model.embed_tokens.weight": table, "model.norm.weight": model.norm.weight, "lm_head.weight": table}
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        w = layer.attn.wqkv.weight
        g, u = layer.ffn.w13.weight.chunk(2, dim=0)
        sd.update({p + "self_attn.q_proj.weight": w[:d], p + "self_attn.k_proj.weight": w[d : 2 * d],
                   p + "self_attn.v_proj.weight": w[2 * d :], p + "self_attn.o_proj.weight": layer.attn.wo.weight,
                   p + "mlp.gate_proj.weight": g, p + "mlp.up_proj.weight": u, p + "mlp.down_proj.weight": layer.ffn.w2.weight,
                   p + "input_layernorm.weight": layer.attn_norm.weight,
                   p + "post_attention_layernorm.weight": layer.ffn_norm.weight})
    with torch.no_grad():
        missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping: missing {missing}, unexpected {unexpected}")
    return hf


def hf_mapping_error(model, hf, tok: Tokenizer) -> float:
    """Max |logit| difference between HF and our model with the iat embedding zeroed (checks the mapping)."""
    import copy

    import torch

    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        m.iat_emb.weight.zero_()
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(tok.packet_base, tok.packet_end, (2, 9), generator=g)
        ours = m(ids, torch.zeros_like(ids))[0] - (m.head_logp if m.cfg.head_size else 0)
        theirs = hf(input_ids=ids).logits
    return float((ours - theirs).abs().max())


class HfPeer:
    """The peer's generation timed like ours (`time_generation`): `LlamaForCausalLM.generate()` on batches of
    one-token class prompts."""

    def __init__(self, hf, tok: Tokenizer, length: int = LENGTH) -> None:
        import torch

        self.hf, self.torch, self.tok = hf, torch, tok
        self.kw = dict(max_new_tokens=length, min_new_tokens=length, do_sample=True, top_k=0, top_p=1.0,
                       temperature=1.0, pad_token_id=PAD, eos_token_id=EOS)
        self.length = length

    def time(self, batch: int, n_flows: int, seed: int = 0, bar=None) -> dict:
        labels = [c for c, n in spread(self.tok.classes, n_flows).items() for _ in range(n)]
        self.torch.manual_seed(seed)
        with self.torch.inference_mode():
            t0 = time.perf_counter()
            for i in range(0, n_flows, batch):
                ids = self.torch.tensor([[self.tok.class_token(c)] for c in labels[i : i + batch]])
                out = self.hf.generate(input_ids=ids, attention_mask=self.torch.ones_like(ids), **self.kw)
                assert out.shape == (len(ids), 1 + self.length)
                if bar is not None:
                    bar.update(len(ids))
            wall = time.perf_counter() - t0
        return {"flows": n_flows, "seconds": wall, "engine_seconds": wall}


# -- the bench ------------------------------------------------------------------------------------------------------------
def run_speed(path: str | Path | list, workdir: str | Path, batches=BATCHES, flows_b1: int = 200, n_batches: int = 3,
              length: int = LENGTH, peer: bool = True, wanted: tuple[str, ...] = ALL, log=print) -> dict:
    """Every variant at every batch size, timed in `n_batches` interleaved rounds.

    This machine's speed drifts by up to 1.7x within an hour, so timing one variant after another compared the hour
    as much as the engines (the int8 bundle once measured slower than fp32 at batch 1 that way, and 1.3x faster
    interleaved). Each round times every (batch size, variant) once, side by side: batch 1 gets flows_b1 / n_batches
    flows per round, a larger batch size one batch. Peak memory is taken while each variant opens and runs one warm-up
    batch of every size, before any timing. Several runs or bundles (`path` a list) are timed in the same rounds, their
    variants named "variant (directory name)"; a target reads the first path that has its variant, the peer the
    first path.
    """
    from tqdm import tqdm

    from .variants import build_variants, is_run

    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    path = paths[0]
    variants: list[Variant] = []
    for i, p in enumerate(paths):
        for v in build_variants(p, Path(workdir, str(i)), wanted, log=log):
            variants.append(v if len(paths) == 1 else dataclasses.replace(v, name=f"{v.name} ({p.name})"))
    rows, meta = {}, {"length": length, "memory": None, "threads": os.cpu_count(), "rounds": n_batches}
    timers: dict[int, list] = {b: [] for b in batches}  # batch size -> [(variant, timer(n, seed, bar))]
    for v in variants:
        with PeakMemory() as mem:
            engine, tok = v.open()
            for b in batches:
                warm_up(engine, tok, b, length)
        meta["memory"] = mem.method
        for b in batches:
            rows[v.name, b] = {"variant": v.name, "size_bytes": v.size_bytes, "batch": b, "peak_mb": mem.peak_mb}
            timers[b].append((v.name, partial(time_generation, engine, tok, b, length=length)))
    if peer and is_run(path):
        from ..train.checkpoint import load_run, read_config

        cfg = read_config(path)
        if cfg.get("model_type", "llama") != "llama":
            log(f"peer: skipped (HF LlamaForCausalLM is the peer of the LLaMA model; this is a {cfg['model_type']} run)")
        elif "quantization" in cfg:
            log("peer: skipped (give the fp32 run: HF gets the fp32 weights)")
        else:
            model, tok = load_run(path)
            with PeakMemory() as mem:
                hf = hf_llama(model)
                meta["hf_mapping_max_abs_err"] = hf_mapping_error(model, hf, tok)
                hf_peer = HfPeer(hf, tok, length)
                for b in batches:
                    hf_peer.time(b, b)  # warm-up
            size = sum(p.numel() * p.element_size() for p in hf.parameters())
            for b in batches:
                rows[PEER, b] = {"variant": PEER, "size_bytes": size, "batch": b, "peak_mb": mem.peak_mb}
                timers[b].append((PEER, partial(hf_peer.time, b)))

    def per_round(b: int) -> int:
        return max(1, flows_b1 // n_batches) if b == 1 else b

    total = n_batches * sum(per_round(b) * len(t) for b, t in timers.items())
    with tqdm(total=total, desc="bench speed", unit="flow", leave=False, disable=None) as bar:
        for r in range(n_batches):
            for b in batches:  # the variants of one batch size side by side in time
                for name, timer in timers[b]:
                    got = timer(per_round(b), seed=r, bar=bar)
                    row = rows[name, b]
                    for k in ("flows", "seconds", "engine_seconds"):
                        row[k] = row.get(k, 0) + got[k]
    for row in rows.values():
        steps = length * -(-row["flows"] // row["batch"])
        row.update(ms_per_flow=1e3 * row["seconds"] / row["flows"], flows_s=row["flows"] / row["seconds"],
                   engine_share=row.pop("engine_seconds") / row["seconds"], steps_s=steps / row["seconds"])
        row["gb_s"] = row["size_bytes"] * row["steps_s"] / 1e9
    rows = list(rows.values())
    return {"rows": rows, "meta": meta, "targets": check_targets(rows)}


def _row(rows, variant, batch):
    """The first row of `variant` (with several paths, names carry " (directory)": the first path that has it)."""
    return next((r for r in rows if r["variant"].split(" (")[0] == variant and r["batch"] == batch), None)


def check_targets(rows: list[dict]) -> list[dict]:
    """The speed and size targets for the shipped variant (the ONNX int8 bundle), or the fastest at batch 1."""
    out = []
    r = _row(rows, "onnx int8", 1024)
    goal = TARGETS["onnx_int8_flows_s_b1024"]
    out.append({"target": f"ONNX int8 >= {goal:,.0f} flows/s at batch 1024", "value": r and r["flows_s"],
                "met": None if r is None else r["flows_s"] >= goal})
    b1 = [r for r in rows if r["batch"] == 1 and r["variant"] != PEER]
    r = _row(rows, "onnx int8", 1) or min(b1, key=lambda r: r["ms_per_flow"], default=None)
    goal = TARGETS["ms_per_flow_b1"]
    out.append({"target": f"<= {goal:g} ms per flow at batch 1 ({r['variant'] if r else 'n/a'})",
                "value": r and r["ms_per_flow"], "met": None if r is None else r["ms_per_flow"] <= goal})
    r = _row(rows, "onnx int8", rows[0]["batch"]) if rows else None
    goal = TARGETS["int8_bundle_mb"]
    out.append({"target": f"int8 bundle <= {goal:g} MB", "value": r and r["size_bytes"] / 1e6,
                "met": None if r is None else r["size_bytes"] / 1e6 <= goal})
    return out


def format_speed(rep: dict) -> str:
    rows = rep["rows"]
    mem = {"vmhwm": "peak RSS growth (VmHWM)", "ru_maxrss": "process ru_maxrss"}.get(rep["meta"]["memory"], "")
    w = max([22, *(len(r["variant"]) + 2 for r in rows)])
    head = (f"{'variant':<{w}}{'size MB':>9}{'batch':>7}{'flows':>7}{'ms/flow':>10}{'flows/s':>11}"
            f"{'engine%':>9}{'GB/s':>8}{'mem MB':>8}")
    lines = [f"{rep['meta']['length']}-packet flows; engine% = wall time inside step() (ONNX: sampling included), "
             f"the rest is the numpy sampler + Python; GB/s = weight bytes x steps/s (meaningful at batch 1); "
             f"mem = {mem}", head, "-" * len(head)]
    for r in rows:
        gb = f"{r['gb_s']:.2f}" if r["batch"] == 1 else "-"
        lines.append(f"{r['variant']:<{w}}{r['size_bytes'] / 1e6:>9.2f}{r['batch']:>7}{r['flows']:>7}"
                     f"{r['ms_per_flow']:>10.3f}{r['flows_s']:>11,.0f}{100 * r['engine_share']:>8.0f}%{gb:>8}"
                     f"{r.get('peak_mb', float('nan')):>8.0f}")
    peers = {r["batch"]: r for r in rows if r["variant"] == PEER}
    if peers:
        lines.append("")
        lines.append(f"peer = HF LlamaForCausalLM.generate(), token sequences only (no iat stream); "
                     f"mapping check max |logit diff| = {rep['meta'].get('hf_mapping_max_abs_err', float('nan')):.1e}")
        for r in rows:
            peer = peers.get(r["batch"])
            if peer and r is not peer:
                lines.append(f"  ours/peer flows/s at batch {r['batch']:<5} {r['variant']:<{w}}"
                             f"{r['flows_s'] / peer['flows_s']:>7.1f}x")
    lines.append("")
    for t in rep["targets"]:
        state = "n/a (variant not built)" if t["met"] is None else ("met" if t["met"] else "NOT met")
        val = "" if t["value"] is None else f" (measured {t['value']:,.3f})"
        lines.append(f"target: {t['target']}: {state}{val}")
    return "\n".join(lines)
