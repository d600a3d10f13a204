"""`ntg-edge bench speed`, `bench parity` and `bench ingest` on the tiny model with small counts (what they report, not
how fast: speed targets are printed by the benches, never asserted in tests)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ntg_edge.appliance.cli import main
import numpy as np

from ntg_edge.bench.parity import METRICS, agrees, interval, run_parity
from ntg_edge.train.checkpoint import load_run

from conftest import ROOT


def test_bench_speed_table(tiny_run, tmp_path):
    js = tmp_path / "speed.json"
    res = CliRunner().invoke(main, ["bench", "speed", str(tiny_run), "--batch-sizes", "1,16", "--flows-b1", "4",
                                    "--batches", "2", "--length", "4", "--json", str(js)])
    assert res.exit_code == 0, res.output
    rep = json.loads(js.read_text())
    names = {r["variant"] for r in rep["rows"]}
    assert {"torch fp32", "torchao int8-wo", "torchao int8-da", "peer HF llama fp32"} <= names
    assert {"onnx fp32", "onnx int8"} <= names, res.output
    assert {(r["variant"], r["batch"]) for r in rep["rows"]} == {(n, b) for n in names for b in (1, 16)}  # peer too
    for r in rep["rows"]:  # 2 interleaved rounds: 2 flows at batch 1, one batch of 16 at batch 16, each
        assert r["flows"] == (4 if r["batch"] == 1 else 32) and r["flows_s"] > 0 and r["size_bytes"] > 0
    assert rep["meta"]["hf_mapping_max_abs_err"] < 1e-4  # our weights really are the peer's weights
    for word in ("ms/flow", "flows/s", "ours/peer", "target:"):
        assert word in res.output


def test_bench_speed_times_several_bundles_in_the_same_rounds(tiny_bundles, tmp_path):
    js = tmp_path / "speed.json"
    res = CliRunner().invoke(main, ["bench", "speed", str(tiny_bundles["fp32"]), str(tiny_bundles["int8"]),
                                    "--batch-sizes", "1,8", "--flows-b1", "2", "--batches", "1", "--length", "3",
                                    "--json", str(js)])
    assert res.exit_code == 0, res.output
    rep = json.loads(js.read_text())
    assert {(r["variant"], r["batch"]) for r in rep["rows"]} == {
        (n, b) for n in ("onnx fp32 (fp32)", "onnx int8 (int8)") for b in (1, 8)}
    size = next(t for t in rep["targets"] if "bundle" in t["target"])  # read from the path that has an int8 bundle
    assert size["value"] == next(r["size_bytes"] for r in rep["rows"] if r["variant"] == "onnx int8 (int8)") / 1e6


def test_parity_fp32_with_itself_passes(tiny_run, demo_split, tmp_path):
    train, test = demo_split
    rep = run_parity(tiny_run, tmp_path, train, test, n_per_class=8, draws=3, wanted=("torch fp32",),
                     log=lambda *_: None)
    assert set(rep["pass"]) == {"torch fp32 seed 3"}  # the control: a fresh draw of fp32 itself
    assert set(rep["reference"]) == set(rep["variants"]["torch fp32 seed 3"]) == set(METRICS)
    ref = rep["reference"]["2gram_jsd"]
    assert ref["lo"] <= ref["value"] <= ref["hi"]
    assert agrees(ref["value"], ref) and not agrees(ref["hi"] + 0.5, ref)


def test_bench_parity_cli(tiny_run, real_files, tmp_path):
    js = tmp_path / "parity.json"
    res = CliRunner().invoke(main, ["bench", "parity", str(tiny_run), "--real-train", str(real_files["train"]),
                                    "--real-test", str(real_files["test"]), "--n-per-class", "8",
                                    "--draws", "2", "--json", str(js)])
    rep = json.loads(js.read_text())
    assert {"torchao int8-wo", "torchao int8-da", "onnx fp32", "onnx int8", "torch fp32 seed 2"} <= set(rep["variants"])
    assert "verdict" in res.output and "pkt_count_jsd" in res.output and "same flows" in res.output
    # the exit code is the verdict: 1 exactly when some variant failed, and the failures are named
    failed = [n for n, ok in rep["pass"].items() if not ok]
    assert res.exit_code == (1 if failed else 0), res.output
    assert all(n in res.output for n in failed)
    # paired draws: the exact export samples fp32's flows from fp32's uniforms; a new seed does not
    same = rep["same_flows"]
    assert same["onnx fp32"] > 0.9 and same["onnx fp32"] > same["torch fp32 seed 2"]
    assert load_run(tiny_run)  # the run itself is untouched


def test_bench_ingest_counts_the_shipped_captures(demo_flows, tmp_path):
    from ntg_edge.runtime.ingest import ingest_paths

    js = tmp_path / "ingest.json"
    res = CliRunner().invoke(main, ["bench", "ingest", str(ROOT / "data" / "captures"), "--json", str(js)])
    assert res.exit_code == 0, res.output
    rep = json.loads(js.read_text())
    flows, report = ingest_paths([ROOT / "data" / "captures"], progress=False)
    assert (rep["files"], rep["packets"], rep["flows"]) == (5, report.packets, len(flows))
    assert rep["packets_s"] > 0 and "packets/s" in res.output


def test_parity_interval_holds_a_new_draw_at_its_coverage():
    """The interval is built from 5 draws and must hold a sixth from the same distribution 99.73% of the time; the
    normal 3 sd would hold it only about 96% of the time, since its sd comes from those 5 draws."""
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(4000):
        x = rng.normal(0.5, 0.01, 6)
        ref = interval([dict.fromkeys(METRICS, v) for v in x[:5]])["markov_jsd"]
        hits.append(ref["lo"] <= x[5] <= ref["hi"])
    assert 0.99 < np.mean(hits)
