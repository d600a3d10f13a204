"""The reference study's baselines as runs: `train --model NAME` writes a hash-checked, pickle-free run directory that
`generate` and `info` read like a LLaMA or Mamba run, and that samples exactly what the fitted baseline in memory does."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from ntg_edge.appliance.cli import main
from ntg_edge.runtime.flows import read_flows
from ntg_edge.runtime.manifest import read_manifest
from ntg_edge.runtime.sampler import class_counts
from ntg_edge.train.synthesizer import BASELINE_CONFIGS, FLOWS, WEIGHTS, make_baseline
from test_cli_errors import _without_torch, fails

# Tiny settings: seconds to fit, enough to exercise every stored tensor and table
TINY = {"smote": [], "fast_retransmit": [], "cvae": ["--epochs", "2", "--hidden", "32", "--hidden2", "16"],
        "gasf": ["--epochs", "1", "--width", "8", "--sample-steps", "3"]}


def cli(*args) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def runs(real_files, tmp_path_factory) -> dict[str, Path]:
    """name -> its run, trained through the CLI on the shipped captures' training split (seed 3), and "threads":
    the torch threads `train` fitted them with (a float sum in another order differs in its last bits)."""
    import torch

    root = tmp_path_factory.mktemp("baseline_runs")
    threads = torch.get_num_threads()
    for name, opts in TINY.items():
        cli("train", real_files["train"], "--model", name, *opts, "--seed", 3, "--out", root / name)
    return {"threads": threads, **{name: root / name for name in TINY}}


def same_flows(a: list, b: list) -> bool:
    """Same labels, directions and lengths; the same gaps to float32 precision as a decoder's gap reaches it.
    Sampling runs on one thread in `generate`, on the fitting threads in memory, so a float32 output differs in its
    last bits; a gap is 10 ** (8 decades × output) (the cvae's), which multiplies that relative error by about 18,
    and subtracting the 1 us floor multiplies it again for gaps near the floor: 2e-5 relative, or a nanosecond."""
    return [(f.label, f.dir, f.pl) for f in a] == [(f.label, f.dir, f.pl) for f in b] and all(
        np.allclose(f.iat, g.iat, rtol=2e-5, atol=1e-9) for f, g in zip(a, b))


@pytest.mark.parametrize("name", list(TINY))
def test_a_run_samples_what_the_fitted_baseline_does(name, runs, real_files, tmp_path):
    run = runs[name]
    # the project's run format, nothing that runs code when loaded
    files = set(read_manifest(run))
    assert files == {"config.yaml", *([WEIGHTS] if name in ("cvae", "gasf") else []),
                     *([FLOWS] if name != "cvae" else [])}
    assert {p.name for p in run.iterdir()} == files | {"manifest.json"}
    assert yaml.safe_load((run / "config.yaml").read_text())["model_type"] == name

    out = tmp_path / "syn.parquet"
    cli("generate", run, "--counts-from", real_files["test"], "--seed", 5, "--out", out)
    test = read_flows(real_files["test"])
    syn = read_flows(out)
    assert Counter(f.label for f in syn) == Counter(f.label for f in test)

    # the same settings and seed fitted in memory sample the same flows
    settings = yaml.safe_load((run / "config.yaml").read_text())["model"]
    fitted = make_baseline(name, threads=runs["threads"], config=BASELINE_CONFIGS[name](**settings))
    fitted.fit(read_flows(real_files["train"]), seed=3)
    assert same_flows(syn, fitted.sample(class_counts(fitted.classes, like=test), seed=5))

    assert "verified" in cli("info", run)


@pytest.mark.parametrize("name", list(TINY))
def test_a_damaged_run_and_sampler_options_are_refused(name, runs, tmp_path):
    damaged = Path(shutil.copytree(runs[name], tmp_path / "damaged"))
    held = damaged / (WEIGHTS if (damaged / WEIGHTS).exists() else FLOWS)
    data = bytearray(held.read_bytes())
    data[len(data) // 2] ^= 1
    held.write_bytes(data)
    fails(["generate", damaged, "--out", tmp_path / "x.parquet"], held.name, "sha256")
    fails(["generate", runs[name], "--top-k", 5, "--out", tmp_path / "x.parquet"], "--top-k", name)
    fails(["generate", runs[name], "--batch-size", 8, "--out", tmp_path / "x.parquet"], "--batch-size")
    fails(["generate", runs[name], "--no-stratified", "--out", tmp_path / "x.parquet"], "--no-stratified", name)


def test_options_and_commands_that_are_not_a_baselines(runs, real_files, tmp_path):
    fails(["train", real_files["train"], "--model", "smote", "--epochs", 3, "--out", tmp_path / "r"], "--epochs")
    fails(["train", real_files["train"], "--model", "cvae", "--patience", 3, "--out", tmp_path / "r"], "--patience")
    fails(["train", real_files["train"], "--model", "llama", "--latent", 3, "--out", tmp_path / "r"], "--latent")
    fails(["export", runs["gasf"], "--out", tmp_path / "b"], "gasf baseline run", "llama and mamba")
    fails(["quantize", runs["cvae"], "--scheme", "int8-wo", "--out", tmp_path / "q"], "cvae baseline run")


def test_edge_install_generates_from_fast_retransmit_and_names_the_extra_for_cvae(runs, tmp_path):
    out = tmp_path / "x.parquet"
    res = _without_torch(tmp_path, "generate", runs["fast_retransmit"], "--n-per-class", 2, "--out", out)
    assert res.returncode == 0, res.stderr
    classes = yaml.safe_load((runs["fast_retransmit"] / "config.yaml").read_text())["classes"]
    assert Counter(f.label for f in read_flows(out)) == {c: 2 for c in classes}
    res = _without_torch(tmp_path, "generate", runs["cvae"], "--out", out)
    assert res.returncode != 0 and "Traceback" not in res.stderr and "ntg-edge[train]" in res.stderr, res.stderr
