"""torchao int8 post-training quantization (train/quantize.py) on the tiny model trained on the shipped captures."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from ntg_edge.appliance.cli import main
from ntg_edge.runtime.flows import read_flows
from ntg_edge.train.checkpoint import load_run
from ntg_edge.train.quantize import logits_error, quantize_model

from conftest import id_table_bytes


@pytest.mark.parametrize("scheme", ["int8-wo", "int8-da"])
def test_quantized_logits_close(tiny_run, scheme):
    model, tok = load_run(tiny_run)
    err = logits_error(model, quantize_model(model, scheme), tok)
    assert err["max_abs_logit_err"] < 0.05 * err["logit_scale"] + 0.05, err
    assert err["top1_agree"] >= 0.95, err
    assert err["kl_nats"] < 1e-2, err


@pytest.mark.parametrize("scheme", ["int8-wo", "int8-da"])
def test_qrun_is_int8_on_disk_loads_and_generates(tiny_run, tmp_path, scheme):
    qrun = tmp_path / "q"
    res = CliRunner().invoke(main, ["quantize", str(tiny_run), "--scheme", scheme, "--out", str(qrun)])
    assert res.exit_code == 0, res.output
    state = load_file(qrun / "model.safetensors")
    assert state["tok_emb.weight.qdata"].dtype == torch.int8  # the tied matrix is int8 too
    assert state["layers.0.attn.wqkv.weight.qdata"].dtype == torch.int8
    tables = id_table_bytes(load_run(tiny_run)[0])
    assert (qrun / "model.safetensors").stat().st_size - tables < 0.45 * (
        (tiny_run / "model.safetensors").stat().st_size - tables)
    # reloaded (pickle-free) == quantized in memory, bit for bit
    model, tok = load_run(tiny_run)
    q1, q2 = quantize_model(model, scheme), load_run(qrun)[0]
    x = torch.randint(tok.packet_base, tok.vocab_size, (3, 6))
    with torch.no_grad():
        assert torch.equal(q1(x, torch.zeros_like(x))[0], q2(x, torch.zeros_like(x))[0])
    out = tmp_path / "syn.parquet"
    res = CliRunner().invoke(main, ["generate", str(qrun), "--n-per-class", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    syn = read_flows(out)
    assert len(syn) == 5 * len(tok.classes) and all(f.label in tok.classes for f in syn)
