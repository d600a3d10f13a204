"""ONNX export and model bundles, on the tiny model trained on real flows of the shipped captures.

torch vs ONNX Runtime parity (fp32 and int8), the hash-checked bundle, and generating from a bundle where torch
cannot be imported at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ntg_edge.appliance.cli import main
from ntg_edge.bench.parity import same_flows
from ntg_edge.runtime.bundle import MODEL, BundleError, load_bundle
from ntg_edge.runtime.manifest import MANIFEST
from ntg_edge.runtime.flows import Flow, read_flows
from ntg_edge.runtime.sampler import Sampling, generate, sample
from ntg_edge.train.checkpoint import load_run
from ntg_edge.train.engine import TorchEngine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flows(demo_split) -> list[Flow]:
    return demo_split[0]


@pytest.fixture(scope="module")
def run(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def bundles(tiny_bundles) -> dict[str, Path]:
    return tiny_bundles


def _real_sequences(flows, tok, t: int = 8, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    enc = [tok.encode(f) for f in flows]
    enc = [(a[:t], b[:t]) for a, b in enc if len(a) >= t][:n]
    return np.stack([a for a, _ in enc]), np.stack([b for _, b in enc])


def _stepwise(step, toks, bins) -> tuple[np.ndarray, np.ndarray]:
    """Feed real sequences one token at a time through a bundle's step function (decode path, growing cache)."""
    past, logits, iat_logits = None, [], []
    for i in range(toks.shape[1]):
        lg, il, past = step.step(toks[:, i : i + 1], bins[:, i : i + 1], past)
        logits.append(lg)
        iat_logits.append(il)
    return np.stack(logits, 1), np.stack(iat_logits, 1)


def _torch_logits(run, toks, bins):
    model, _ = load_run(run)
    with torch.no_grad():
        logits, iat_logits, _ = model(torch.from_numpy(toks), torch.from_numpy(bins))
    return logits.numpy(), iat_logits.numpy()


def test_bundle_layout_and_manifest(bundles):
    b = bundles["fp32"]
    assert sorted(p.name for p in b.iterdir()) == ["config.yaml", "manifest.json", "model.onnx"]
    files = json.loads((b / MANIFEST).read_text())["files"]
    assert set(files) == {"config.yaml", "model.onnx"}
    assert not [p for p in b.parent.iterdir() if p.name.startswith(".")]  # no temporary directory left behind


def test_onnx_matches_torch_on_real_flows(run, bundles, flows):
    step, tok = load_bundle(bundles["fp32"], "cpu")
    toks, bins = _real_sequences(flows, tok)
    ref, ref_iat = _torch_logits(run, toks, bins)
    got, got_iat = _stepwise(step, toks, bins)
    assert np.abs(got - ref).max() < 1e-3
    assert np.abs(got_iat - ref_iat).max() < 1e-3
    # prefill: the same graph takes a whole sequence with an empty past and returns the last position
    lg, il, _ = step.step(toks, bins, None)
    assert np.abs(lg - ref[:, -1]).max() < 1e-3


def test_int8_bundle_smaller_and_close(run, bundles, flows):
    from conftest import id_table_bytes

    tables = id_table_bytes(load_run(run)[0], 64)
    int8, fp32 = ((bundles[n] / MODEL).stat().st_size - tables for n in ("int8", "fp32"))
    assert int8 < 0.6 * fp32, (int8, fp32)
    step, tok = load_bundle(bundles["int8"], "cpu")
    toks, bins = _real_sequences(flows, tok)
    ref, _ = _torch_logits(run, toks, bins)
    got, _ = _stepwise(step, toks, bins)

    def logp(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p, q = logp(ref), logp(got)
    kl = (np.exp(p) * (p - q)).sum(-1).mean()
    assert kl < 0.02, kl
    assert (ref.argmax(-1) == got.argmax(-1)).mean() > 0.9


def test_in_graph_sampler_picks_what_numpy_picks(bundles, flows):
    """The bundle's graph samples (export/onnx.py add_sampler) by the numpy sampler's rule: same logits, same uniforms,
    same ids; and a whole generation through it gives the flows the numpy sampler gives from the graph's logits."""
    engine, tok = load_bundle(bundles["fp32"], "cpu")
    toks, bins = _real_sequences(flows, tok)
    toks, bins = np.repeat(toks, 16, axis=0), np.repeat(bins, 16, axis=0)  # each context with 16 uniforms
    u = np.random.default_rng(0).random((len(toks), 2), dtype=np.float32)
    ban = np.zeros(tok.vocab_size, np.float32)
    ban[: tok.packet_base] = -np.inf  # packets only
    logits, iat_logits, _ = engine.step(toks, bins, None)
    ids, iat_bins, _ = engine.sample_step(toks, bins, None, u, 0.8, ban)
    want = sample(logits, Sampling(0.8), u[:, 0], ban)
    assert (ids >= tok.packet_base).all()
    assert (ids == want).mean() > 0.99 and len(set(want)) > 10  # a u within rounding of a boundary may differ
    assert (iat_bins == sample(iat_logits, Sampling(0.8), u[:, 1])).mean() > 0.99

    class NumpyOnly:  # the same engine, its logits sampled in numpy
        samples, provider = False, engine.provider
        step, select = engine.step, engine.select

    counts = {c: 16 for c in tok.classes}
    a = [f for batch in generate(engine, tok, counts, seed=3) for f in batch]
    b = [f for batch in generate(NumpyOnly(), tok, counts, seed=3) for f in batch]
    assert same_flows(a, b) > 0.95


def test_guided_generation_from_bundle_matches_torch(run, bundles):
    """Guidance runs each flow twice, with and without its class, through the engine's step (not the in-graph
    sampler): the bundle's flows are torch's, as unguided ones are; a model never trained without its class is
    refused in one line."""
    model, tok = load_run(run)
    counts, guided = {c: 8 for c in tok.classes}, Sampling(guidance=0.5)
    engine, btok = load_bundle(bundles["fp32"], "cpu")
    assert btok.any_class
    want = [f for batch in generate(TorchEngine(model), tok, counts, guided, seed=4) for f in batch]
    assert same_flows(want, [f for batch in generate(engine, btok, counts, guided, seed=4) for f in batch]) > 0.8
    plain = [f for batch in generate(TorchEngine(model), tok, counts, seed=4) for f in batch]
    assert same_flows(want, plain) < 0.8
    with pytest.raises(ValueError, match="guidance 0.5: this model was trained without --class-dropout or "
                                         "--other-flows"):
        next(generate(engine, dataclasses.replace(btok, any_class=False), counts, guided, seed=4))


def test_tampered_bundle_refused(bundles, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(bundles["int8"], bad)
    with open(bad / MODEL, "r+b") as f:  # flip one byte of the weights
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="model.onnx: sha256 does not match"):
        load_bundle(bad)
    res = CliRunner().invoke(main, ["generate", str(bad), "--n-per-class", "2", "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code != 0 and "model.onnx" in res.output and "sha256" in res.output
    assert not (tmp_path / "x.parquet").exists()


def test_generate_from_bundle_without_torch(bundles, tmp_path):
    """`ntg-edge generate BUNDLE` in a process where `import torch` fails: a valid flows file, same seed same flows."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block.parent), os.environ.get("PYTHONPATH", "")])}
    outs = []
    for i in range(2):
        out = tmp_path / f"syn{i}.parquet"
        cmd = [sys.executable, "-c", "from ntg_edge.appliance.cli import main; main()", "generate",
               str(bundles["int8"]), "--n-per-class", "8", "--seed", "7", "--batch-size", "16", "--out", str(out)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(read_flows(out))
    _, tok = load_bundle(bundles["int8"])
    a, b = outs
    assert len(a) == 8 * len(tok.classes)
    assert Counter(f.label for f in a) == {c: 8 for c in tok.classes}
    assert all(f.pl and len(f.pl) == len(f.dir) == len(f.iat) <= tok.max_packets for f in a)
    assert all(0 <= p <= tok.max_len for f in a for p in f.pl) and all(d in (1, -1) for f in a for d in f.dir)
    assert [(f.label, f.pl, f.dir, f.iat) for f in a] == [(f.label, f.pl, f.dir, f.iat) for f in b]


def test_fixed_length_generation_from_bundle(bundles):
    step, tok = load_bundle(bundles["fp32"])
    got = [f for batch in generate(step, tok, {tok.classes[0]: 5}, batch_size=4, seed=1, length=10) for f in batch]
    assert len(got) == 5 and all(len(f.pl) == 10 for f in got)


def test_export_refuses_to_overwrite_a_non_bundle(run, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "not a bundle" in res.output
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_tensorrt_reports_when_missing(bundles):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed: the engine build is exercised on GPU machines, not here")
    except ImportError:
        pass
    from ntg_edge.export.tensorrt import TensorRTUnavailable, build_engine

    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        build_engine(bundles["fp32"] / MODEL, "/nonexistent.plan", n_heads=2, head_dim=16, block_size=18)


def test_graphs_use_fused_ops_and_one_int8_token_table(run, bundles):
    """The opset-23 graphs carry attention as single ONNX ops, and the int8 graph keeps the tied token table once, in
    int8, never dequantizing all of it (export/onnx.py: int8_tied_head)."""
    import onnx
    from onnx import numpy_helper

    model, tok = load_run(run)
    table = (model.cfg.head_size or tok.vocab_size) * model.cfg.dim
    for name in ("fp32", "int8"):
        ops = Counter(n.op_type for n in onnx.load(bundles[name] / MODEL).graph.node)
        assert ops["RotaryEmbedding"] == ops["Attention"] * 2 == 2 * model.cfg.n_layers, (name, ops)
    g = onnx.load(bundles["int8"] / MODEL).graph
    big = {t.name: numpy_helper.to_array(t) for t in g.initializer
           if t.name.startswith("model.tok_emb.weight") and int(np.prod(t.dims)) >= table}
    assert [a.dtype.itemsize for a in big.values()] == [1], {k: a.dtype for k, a in big.items()}  # (u)int8, once
    assert not [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in big]


@pytest.mark.parametrize("model_type", ["llama", "mamba"])
def test_untrained_model_exports_with_its_sampler(model_type, tmp_path):
    """An untrained model's norms are all ones, and the exporter merges equal weights under one name: the in-graph
    sampler must still find the final norm (it once looked it up by name and failed here)."""
    from conftest import export_bundles
    from ntg_edge.runtime.tokenizer import Tokenizer
    from ntg_edge.train.checkpoint import build_model, save_run

    tok = Tokenizer(classes=("a", "b"), max_packets=8)
    torch.manual_seed(0)
    save_run(tmp_path / "run", build_model(model_type, tok, {"dim": 32, "n_layers": 2}), tok, {"train": {}})
    for bundle in export_bundles(tmp_path / "run", tmp_path).values():
        engine, btok = load_bundle(bundle)
        flows = [f for batch in generate(engine, btok, {"a": 3, "b": 3}, Sampling(), 6, seed=0) for f in batch]
        assert sorted(f.label for f in flows) == ["a"] * 3 + ["b"] * 3


def test_length_token_round_trip_and_bundle_generation(flows, tmp_path):
    """With --length-token every sequence carries its flow's length bucket after the class token; decoding is still
    exact, and the bundle's in-graph sampler draws the bucket first and then the flows torch draws."""
    from conftest import TINY, export_bundles
    from ntg_edge.runtime.settings import TrainConfig
    from ntg_edge.train.train import train

    train(flows, tmp_path / "run", TINY, TrainConfig(epochs=3, val_flows_per_class=10, max_packets=16,
                                                     length_token=True), log=lambda *_: None)
    model, tok = load_run(tmp_path / "run")
    assert tok.length_token and tok.vocab_size == tok.packet_end + tok.n_lengths
    for f in flows[:200]:
        toks, bins = tok.encode(f)
        n = min(len(f.pl), tok.max_packets)
        lo = tok.length_id(n) - tok.packet_end
        assert toks[1] == tok.length_id(n) and (lo == tok.n_lengths - 1 or tok.length_id(n + 1) >= toks[1])
        back = tok.decode(toks[1:], bins[1:], f.label)
        assert back.pl == [min(p, tok.max_len) for p in f.pl[:n]] and back.dir == f.dir[:n]
    counts = {c: 8 for c in tok.classes}
    engine, btok = load_bundle(export_bundles(tmp_path / "run", tmp_path)["fp32"])
    a = [f for batch in generate(TorchEngine(model), tok, counts, seed=2) for f in batch]
    b = [f for batch in generate(engine, btok, counts, seed=2) for f in batch]
    assert same_flows(a, b) > 0.95

    class Recording:  # torch's engine, keeping what each step was fed
        samples, fed = False, []

        def step(self, tokens, iats, state):
            self.fed.append((tokens.copy(), iats.copy()))
            return TorchEngine(model).step(tokens, iats, state)

        select = TorchEngine(model).select

    rec = Recording()
    assert [(f.pl, f.dir) for batch in generate(rec, tok, counts, seed=2) for f in batch] == [(f.pl, f.dir) for f in a]
    second, second_iat = rec.fed[1]  # what the first step drew: a length id each, with no gap
    assert all(tok.packet_end <= t < tok.vocab_size for t in second.ravel()) and not second_iat.any()
    fixed = [f for batch in generate(engine, btok, counts, seed=2, length=10) for f in batch]
    assert all(len(f.pl) == 10 for f in fixed)


@pytest.mark.parametrize("model_type", ["llama", "mamba"])
def test_factorised_head_shares_lengths_and_exports(model_type, flows, tmp_path):
    """--length-head: the head scores (direction, length bucket); an id's logit is its bucket's plus the training
    lengths' log share inside the bucket, so ids of one bucket keep fixed odds whatever the flow. Frequent lengths are
    buckets alone; the run quantizes, exports, and generates through the in-graph sampler the flows torch generates,
    but where float rounding picks another length of the bucket or the next bucket."""
    import onnx
    from conftest import TINY, export_bundles
    from test_mamba import TINY_MAMBA
    from ntg_edge.runtime.settings import TrainConfig
    from ntg_edge.train.checkpoint import quantize_run
    from ntg_edge.train.train import train

    mc = TINY if model_type == "llama" else TINY_MAMBA
    train(flows, tmp_path / "run", mc, TrainConfig(epochs=2, val_flows_per_class=10, max_packets=16, length_head=8),
          log=lambda *_: None, model_type=model_type)
    model, tok = load_run(tmp_path / "run")
    head_of, logp = model.head_of, model.head_logp
    assert tok.packet_base + 16 <= model.cfg.head_size < tok.vocab_size // 8
    # each output's ids share its probability mass: the log shares inside an output sum to 1
    mass = torch.zeros(model.cfg.head_size, dtype=torch.float64).index_add_(0, head_of, logp.double().exp())
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-5)
    # a length carrying at least an eighth of its direction's packets is a bucket alone (probability 1 inside it)
    pl = Counter((d, min(p, tok.max_len)) for f in flows for d, p in zip(f.dir[:16], f.pl[:16]))
    (d, length), n = pl.most_common(1)[0]
    frequent = int(tok.packet_tokens(np.array([d]), np.array([length]))[0])
    assert n * 8 >= sum(v for (dd, _), v in pl.items() if dd == d)
    assert (head_of == head_of[frequent]).sum() == 1 and abs(float(logp[frequent])) < 1e-6
    toks, bins = _real_sequences(flows, tok)
    ref, _ = _torch_logits(tmp_path / "run", toks, bins)
    outputs = head_of.numpy()
    shared = np.flatnonzero(np.bincount(outputs[tok.packet_base : tok.packet_end]) > 1)[-1]
    a, b = np.flatnonzero(outputs == shared)[:2]
    assert np.allclose(ref[..., a] - ref[..., b], float(logp[a] - logp[b]), atol=1e-4)  # fixed odds in a bucket

    q = quantize_run(tmp_path / "run", "int8-da", tmp_path / "q")
    # at this tiny size the head's two id tables (8 bytes an id, not quantized) are a third of the int8 run
    assert q["int8_bytes"] < 0.6 * q["fp32_bytes"] and q["top1_agree"] > 0.9
    qflows = [f for batch in generate(TorchEngine(load_run(tmp_path / "q")[0]), tok, {c: 4 for c in tok.classes})
              for f in batch]
    assert len(qflows) == 4 * tok.n_classes and all(tok.encode(f)[0].size for f in qflows)
    bundles = export_bundles(tmp_path / "run", tmp_path)
    for name in ("fp32", "int8"):
        # the head's weight columns are gathered once (export/onnx.py gather_head_columns), not its logits every
        # step, and the file keeps the small table
        g = onnx.load(bundles[name] / MODEL).graph
        assert not [n for n in g.node if n.op_type == "Gather" and any(a.name == "axis" and a.i in (-1, 2)
                                                                       for a in n.attribute)], name
        assert max(int(np.prod(t.dims)) for t in g.initializer) < tok.vocab_size * model.cfg.dim // 4, name
    step, _ = load_bundle(bundles["fp32"], "cpu")
    got, _ = _stepwise(step, toks, bins)
    assert np.abs(got[..., : tok.vocab_size] - ref).max() < 1e-3
    # A bucket spreads a little mass over lengths never seen in training: many ids of tiny probability, whose CDF
    # steps are within float32 rounding of each other, so the in-graph sampler's grouped sums pick another length of
    # the same bucket where numpy's running sum picks this one more often than with one output per length. And the
    # graph's logits differ from torch's in their last bits, so a uniform on the step between two buckets can pick
    # the next bucket (the head's outputs are in length order), whose length is then drawn with a uniform of its own.
    # After either the flow goes its own way. Every first difference must be in the same bucket or the next one over.
    counts = {c: 8 for c in tok.classes}
    want = [f for batch in generate(TorchEngine(model), tok, counts, seed=2) for f in batch]
    engine, btok = load_bundle(bundles["fp32"], "cpu")
    assert engine.samples
    got_flows = [f for batch in generate(engine, btok, counts, seed=2) for f in batch]
    assert same_flows(want, got_flows) > 0.8
    for x, y in zip(want, got_flows):
        i = next((i for i, (p, q) in enumerate(zip(zip(x.dir, x.pl), zip(y.dir, y.pl))) if p != q), None)
        if i is not None:
            ids = tok.packet_tokens(np.array([x.dir[i], y.dir[i]]), np.array([x.pl[i], y.pl[i]]))
            assert x.dir[i] == y.dir[i] and abs(int(head_of[ids[0]]) - int(head_of[ids[1]])) <= 1, (x.pl[i], y.pl[i])
    step, _ = load_bundle(bundles["int8"], "cpu")
    got, _ = _stepwise(step, toks, bins)
    p, q = (torch.from_numpy(x[..., : tok.vocab_size]).log_softmax(-1) for x in (ref, got))
    assert float((p.exp() * (p - q)).sum(-1).mean()) < 0.02
    # the temperature divides the head's per-id log shares too, as the numpy sampler divides the whole logit
    hot = Sampling(temperature=0.7)
    want = [f for batch in generate(TorchEngine(model), tok, counts, hot, seed=3) for f in batch]
    engine, btok = load_bundle(bundles["fp32"], "cpu")
    assert same_flows(want, [f for batch in generate(engine, btok, counts, hot, seed=3) for f in batch]) > 0.8
