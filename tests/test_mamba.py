"""The Mamba generator (train/mamba.py) end to end, on real flows of the shipped captures: the recurrent step equals the
full-sequence scan, a tiny Mamba trains and generates, torchao int8, the ONNX step graph and bundles (fp32, int8, the
in-graph sampler, no torch), and the benches."""

from __future__ import annotations

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
from ntg_edge.bench.steps import format_steps, run_steps
from ntg_edge.runtime.bundle import MODEL, load_bundle
from ntg_edge.runtime.engine import STATE_IN
from ntg_edge.runtime.flows import read_flows
from ntg_edge.runtime.sampler import Sampling, generate, sample
from ntg_edge.runtime.settings import MambaConfig
from ntg_edge.runtime.tokenizer import Tokenizer
from ntg_edge.train.checkpoint import load_run, read_config
from ntg_edge.train.data import pad
from ntg_edge.train.engine import TorchEngine
from ntg_edge.train.mamba import Mamba
from ntg_edge.train.quantize import logits_error, quantize_model

from conftest import export_bundles

TINY_MAMBA = {"dim": 32, "d_inner": 64, "n_layers": 2, "d_state": 8, "dropout": 0.1}


@pytest.fixture(scope="module")
def mamba_run(demo_split, tmp_path_factory) -> Path:
    """TINY_MAMBA trained for 2 epochs on the shipped captures' training split (16 packets per flow)."""
    from ntg_edge.train.train import TrainConfig, train

    out = tmp_path_factory.mktemp("mamba_run")
    # the exact head: at this size a factorised head's table is too small for int8 to halve the bundle; the
    # factorised Mamba is tested in test_export.py
    train(demo_split[0], out, TINY_MAMBA, TrainConfig(epochs=2, val_flows_per_class=10, max_packets=16, length_head=0),
          log=lambda *_: None, model_type="mamba")
    return out


@pytest.fixture(scope="module")
def mamba_bundles(mamba_run, tmp_path_factory) -> dict[str, Path]:
    return export_bundles(mamba_run, tmp_path_factory.mktemp("mamba_bundles"))


def _real(flows, tok: Tokenizer, t: int = 12, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    enc = [(a[:t], b[:t]) for a, b in (tok.encode(f) for f in flows) if len(a) >= t][:n]
    return np.stack([a for a, _ in enc]), np.stack([b for _, b in enc])


def _stepwise(engine, toks, bins) -> tuple[np.ndarray, np.ndarray]:
    state, logits, iat_logits = None, [], []
    for i in range(toks.shape[1]):
        lg, il, state = engine.step(toks[:, i : i + 1], bins[:, i : i + 1], state)
        logits.append(lg)
        iat_logits.append(il)
    return np.stack(logits, 1), np.stack(iat_logits, 1)


def _logp(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_recurrent_steps_equal_the_full_scan_on_real_flows(demo_flows):
    """Generation's one-token steps, and a prefill continued by steps, reproduce the training forward (study size)."""
    flows = [f for f in demo_flows[0] if len(f.pl) >= 24][:8]
    tok = Tokenizer(classes=tuple(sorted({f.label for f in demo_flows[0] if f.label})), max_packets=32)
    torch.manual_seed(0)
    model = Mamba(MambaConfig(tok.vocab_size, tok.iat_bins, tok.block_size)).eval()
    assert (model.cfg.dim, model.cfg.d_inner, model.cfg.n_layers) == (72, 144, 4)
    toks, bins = pad([tok.encode(f) for f in flows])
    with torch.no_grad():
        full, full_iat, _ = model(toks, bins)
        state, steps, iat_steps = None, [], []
        for t in range(toks.shape[1]):
            lg, il, state = model(toks[:, t : t + 1], bins[:, t : t + 1], state)
            steps.append(lg)
            iat_steps.append(il)
        assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
        assert torch.allclose(torch.cat(iat_steps, 1), full_iat, atol=1e-5)
        conv, ssm = state[0]
        assert conv.shape == (len(flows), 3, 144) and ssm.shape == (len(flows), 144, 16)
        _, _, prefix = model(toks[:, :9], bins[:, :9])  # prefill, then the rest as one more prefill from that state
        rest, _, _ = model(toks[:, 9:], bins[:, 9:], prefix)
        assert torch.allclose(rest, full[:, 9:], atol=1e-5)


def test_tiny_mamba_trains_and_generates(mamba_run, demo_split):
    cfg = read_config(mamba_run)
    assert cfg["model_type"] == "mamba" and cfg["model"]["d_inner"] == 64 and "selected" in cfg
    assert (mamba_run / "history.yaml").is_file()
    model, tok = load_run(mamba_run)
    assert isinstance(model, Mamba) and cfg["parameters"] == model.n_params()
    counts = {c: 10 for c in tok.classes}
    syn = [f for b in generate(TorchEngine(model), tok, counts, seed=1) for f in b]
    assert Counter(f.label for f in syn) == counts
    assert all(f.pl and len(f.pl) == len(f.dir) == len(f.iat) <= tok.max_packets for f in syn)
    assert len({tuple(f.pl) for f in syn}) > 10  # not one flow over and over


@pytest.mark.parametrize("scheme", ["int8-wo", "int8-da"])
def test_torchao_int8_close_and_reloads(mamba_run, tmp_path, scheme):
    model, tok = load_run(mamba_run)
    q = quantize_model(model, scheme)
    err = logits_error(model, q, tok)
    assert err["max_abs_logit_err"] < 0.05 * err["logit_scale"] + 0.05, err
    assert err["top1_agree"] >= 0.95 and err["kl_nats"] < 1e-2, err
    res = CliRunner().invoke(main, ["quantize", str(mamba_run), "--scheme", scheme, "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    q2, _ = load_run(tmp_path / "q")
    x = torch.randint(tok.packet_base, tok.vocab_size, (3, 6))
    with torch.no_grad():
        assert torch.equal(q(x, torch.zeros_like(x))[0], q2(x, torch.zeros_like(x))[0])


def test_step_graph_state_is_explicit_and_loop_free(mamba_bundles, mamba_run):
    import onnx

    model, _ = load_run(mamba_run)
    c = model.cfg
    g = onnx.load(mamba_bundles["fp32"] / MODEL).graph
    shapes = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in g.input}
    states = {n: s for n, s in shapes.items() if n.startswith(STATE_IN)}
    assert states == {**{f"past_conv_{i}": ["batch", c.d_conv - 1, c.d_inner] for i in range(c.n_layers)},
                      **{f"past_ssm_{i}": ["batch", c.d_inner, c.d_state] for i in range(c.n_layers)}}
    assert {f"present_{n[5:]}" for n in states} <= {o.name for o in g.output}
    assert not [n for n in g.node if n.op_type in ("Loop", "Scan")]


def test_onnx_matches_torch_on_real_flows(mamba_run, mamba_bundles, demo_split):
    model, _ = load_run(mamba_run)
    engine, tok = load_bundle(mamba_bundles["fp32"], "cpu")
    toks, bins = _real(demo_split[0], tok)
    with torch.no_grad():
        ref, ref_iat, _ = model(torch.from_numpy(toks), torch.from_numpy(bins))
    got, got_iat = _stepwise(engine, toks, bins)
    assert np.abs(got - ref.numpy()).max() < 1e-4
    assert np.abs(got_iat - ref_iat.numpy()).max() < 1e-4


def test_int8_bundle_smaller_and_close(mamba_run, mamba_bundles, demo_split):
    assert (mamba_bundles["int8"] / MODEL).stat().st_size < 0.5 * (mamba_bundles["fp32"] / MODEL).stat().st_size
    model, _ = load_run(mamba_run)
    engine, tok = load_bundle(mamba_bundles["int8"], "cpu")
    toks, bins = _real(demo_split[0], tok)
    with torch.no_grad():
        ref = model(torch.from_numpy(toks), torch.from_numpy(bins))[0].numpy()
    got, _ = _stepwise(engine, toks, bins)
    p, q = _logp(ref), _logp(got)
    assert (np.exp(p) * (p - q)).sum(-1).mean() < 0.02
    assert (ref.argmax(-1) == got.argmax(-1)).mean() > 0.9


def test_in_graph_sampler_picks_what_numpy_picks(mamba_bundles, demo_split):
    engine, tok = load_bundle(mamba_bundles["fp32"], "cpu")
    toks, bins = _real(demo_split[0], tok)
    state = None
    for i in range(toks.shape[1] - 1):  # the graph takes one token a step: bring each row's state to its last token
        _, _, state = engine.step(toks[:, i : i + 1], bins[:, i : i + 1], state)
    rows = np.repeat(np.arange(len(toks)), 16)  # each context with 16 uniforms
    state = engine.select(state, rows)
    last, last_bin = toks[rows, -1:], bins[rows, -1:]
    u = np.random.default_rng(0).random((len(rows), 2), dtype=np.float32)
    ban = np.zeros(tok.vocab_size, np.float32)
    ban[: tok.packet_base] = -np.inf
    logits, iat_logits, _ = engine.step(last, last_bin, state)
    ids, iat_bins, _ = engine.sample_step(last, last_bin, state, u, 0.8, ban)
    want = sample(logits, Sampling(0.8), u[:, 0], ban)
    assert (ids == want).mean() > 0.99 and len(set(want)) > 10
    assert (iat_bins == sample(iat_logits, Sampling(0.8), u[:, 1])).mean() > 0.99


def test_generate_from_mamba_bundle_without_torch(mamba_bundles, tmp_path):
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block.parent), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "syn.parquet"
    cmd = [sys.executable, "-c", "from ntg_edge.appliance.cli import main; main()", "generate",
           str(mamba_bundles["int8"]), "--n-per-class", "8", "--seed", "7", "--batch-size", "16", "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    flows = read_flows(out)
    _, tok = load_bundle(mamba_bundles["int8"])
    assert Counter(f.label for f in flows) == {c: 8 for c in tok.classes}
    assert all(f.pl and len(f.pl) == len(f.dir) == len(f.iat) <= tok.max_packets for f in flows)
    assert all(0 <= p <= tok.max_len for f in flows for p in f.pl) and all(d in (1, -1) for f in flows for d in f.dir)


def test_bench_parity_and_speed_cover_mamba(mamba_run, real_files, tmp_path):
    js = tmp_path / "parity.json"
    res = CliRunner().invoke(main, ["bench", "parity", str(mamba_run), "--real-train", str(real_files["train"]),
                                    "--real-test", str(real_files["test"]), "--n-per-class", "8",
                                    "--draws", "2", "--json", str(js)])
    rep = json.loads(js.read_text())
    assert {"torchao int8-wo", "torchao int8-da", "onnx fp32", "onnx int8"} <= set(rep["variants"]), res.output
    assert res.exit_code == (0 if all(rep["pass"].values()) else 1), res.output
    assert rep["same_flows"]["onnx fp32"] > 0.9  # the exact export samples fp32's flows from fp32's uniforms
    js = tmp_path / "speed.json"
    res = CliRunner().invoke(main, ["bench", "speed", str(mamba_run), "--batch-sizes", "1,8", "--flows-b1", "2",
                                    "--batches", "1", "--length", "3", "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "peer: skipped" in res.output and "mamba run" in res.output
    names = {r["variant"] for r in json.loads(js.read_text())["rows"]}
    assert {"torch fp32", "torchao int8-wo", "torchao int8-da", "onnx fp32", "onnx int8"} == names


def test_step_cost_table(mamba_bundles, tmp_path):
    """Any bundles step side by side (the LLaMA one is no different to this function): the table's shape."""
    rep = run_steps([mamba_bundles["fp32"], mamba_bundles["int8"]], tmp_path, batches=(1, 4), positions=(1, 8, 99),
                    reps=3, log=lambda *_: None)
    assert rep["positions"] == [1, 8]  # 99 is past the tiny model's horizon
    assert {(r["model"].split()[2], r["batch"], r["position"]) for r in rep["rows"]} == {
        (m, b, p) for m in ("fp32", "int8") for b in (1, 4) for p in (1, 8)}
    assert all(r["ms"] > 0 for r in rep["rows"]) and "last/first" in format_steps(rep)


def test_train_options_belong_to_the_model(tmp_path):
    flows = tmp_path / "f.parquet"
    flows.write_bytes(b"")  # never read: the options are refused first
    for args, msg in ((["--model", "mamba", "--n-heads", "4"], "--n-heads: not an option of --model mamba"),
                      (["--d-state", "4"], "--d-state: not an option of --model llama"),
                      (["--model", "mamba", "--d-conv", "1"], "--d-conv"),
                      (["--length-scales", "2", "--length-head", "64"], "length_scales, length_head")):
        res = CliRunner().invoke(main, ["train", str(flows), *args, "--out", str(tmp_path / "run")])
        assert res.exit_code == 2 and msg in res.output, res.output
    assert not (tmp_path / "run").exists()
