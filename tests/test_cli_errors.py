"""Bad input on the command line: each case must exit non-zero with one line naming the file or option and what was
expected -- never a traceback, never a silent guess -- and leave what was already written as it was."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from ntg_edge.appliance.cli import main
from ntg_edge.runtime.flows import SCHEMA, to_table, write_flows
from ntg_edge.runtime.manifest import MANIFEST, RUN_FORMAT, write_manifest

from conftest import CAPTURES


def fails(args: list, *names: str) -> str:
    """Run the CLI; assert a non-zero exit, no traceback, and an error naming each of `names`. Returns the output."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    out = res.output
    assert res.exit_code not in (0, None), f"exit 0 for {args}: {out}"
    assert res.exception is None or isinstance(res.exception, SystemExit), f"traceback for {args}: {res.exception!r}"
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, f"expected one error line for {args}: {out}"
    for name in names:
        assert name in out, f"{name!r} not named for {args}: {out}"
    return out


def _corrupt_flows(path: Path, train: list, column: str, value) -> Path:
    """A flows file whose row 3 has `column` replaced by `value` (written with pyarrow, past our writer's checks)."""
    table = to_table(train[:10]).to_pydict()
    table[column][3] = value
    pq.write_table(pa.table(table, schema=SCHEMA), path)
    return path


@pytest.mark.parametrize("column,value,why", [("pl", [1, 2], "entries"), ("dir", [1, 2, 1], "dir"),
                                              ("pl", [-3, 5, 5], "pl"), ("iat", [0.0], "entries")])
def test_corrupt_flows_are_refused_by_every_reader(demo_split, real_files, tmp_path, column, value, why):
    train = [f for f in demo_split[0] if len(f.pl) == 3] or demo_split[0]
    bad = _corrupt_flows(tmp_path / "bad.parquet", [f for f in demo_split[0] if len(f.pl) >= 3], column, value)
    for args in (["split", bad, "--out", tmp_path / "split"],
                 ["evaluate", "--real-test", bad, "--synthetic", real_files["test"]],
                 ["evaluate", "--real-test", real_files["test"], "--synthetic", bad],
                 ["train", bad, "--out", tmp_path / "run", "--epochs", "1"]):
        fails(args, str(bad), "row 3")
    assert not (tmp_path / "run").exists() and not (tmp_path / "split").exists()
    assert train


@pytest.mark.parametrize("args,option", [
    (["--n-per-class", "0"], "--n-per-class"), (["--n-per-class", "-1"], "--n-per-class"),
    (["--temperature", "-1"], "--temperature"), (["--temperature", "0"], "--temperature"),
    (["--top-p", "2"], "--top-p"), (["--top-k", "-3"], "--top-k"), (["--batch-size", "0"], "--batch-size"),
    (["--device", "gpu0"], "--device"), (["--seed", "-1"], "--seed"), (["--classes", "nosuch"], "--classes"),
])
def test_generate_options(tiny_run, tmp_path, args, option):
    out = tmp_path / "syn.parquet"
    fails(["generate", tiny_run, *args, "--out", out], option)
    assert not out.exists()


def test_generate_conflicting_counts(tiny_run, real_files, tmp_path):
    out = tmp_path / "syn.parquet"
    fails(["generate", tiny_run, "--n-per-class", "3", "--counts-from", real_files["train"], "--out", out],
          "--n-per-class", "--counts-from")
    fails(["generate", tiny_run, "--scale", "2", "--out", out], "--scale", "--counts-from")
    fails(["generate", tiny_run, "--counts-from", real_files["train"], "--scale", "-1", "--out", out], "--scale")
    fails(["generate", tiny_run, "--device", "tensorrt", "--out", out], "--device tensorrt")
    assert not out.exists()


def test_generate_refuses_an_output_it_cannot_write(tiny_run, tmp_path):
    fails(["generate", tiny_run, "--n-per-class", "2", "--out", tmp_path / "syn.pcap"], "syn.pcap", "Parquet")
    assert not (tmp_path / "syn.pcap").exists()


@pytest.mark.parametrize("args,option", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"), (["--lr", "-1"], "--lr"),
    (["--dropout", "2"], "--dropout"), (["--device", "gpu0"], "--device"), (["--max-packets", "0"], "--max-packets"),
    (["--dim", "7", "--n-heads", "3"], "n_heads"), (["--model", "gpt"], "--model"),
])
def test_train_options(real_files, tmp_path, args, option):
    fails(["train", real_files["train"], *args, "--out", tmp_path / "run"], option)
    assert not (tmp_path / "run").exists()


def test_outputs_never_land_in_a_folder_of_other_files(real_files, tiny_run, tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    fails(["train", real_files["train"], "--epochs", "1", "--out", keep], str(keep), "not a run")
    fails(["quantize", tiny_run, "--scheme", "int8-wo", "--out", keep], str(keep), "not a run")
    fails(["export", tiny_run, "--out", keep], str(keep), "not a bundle")
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]
    for args in (["train", real_files["train"], "--out", ""], ["generate", tiny_run, "--out", ""],
                 ["split", real_files["train"], "--out", " "], ["evaluate", "--real-test", real_files["test"], "--synthetic",
                                                           real_files["test"], "--json", ""]):
        fails(args, "--out" if "--out" in args else "--json", "empty")


def test_train_other_flows_of_a_training_class_or_for_a_baseline(real_files, tmp_path):
    """--other-flows given the training flows themselves: refused, naming the other file; a baseline has no use
    for them."""
    fails(["train", real_files["train"], "--other-flows", real_files["test"], "--out", tmp_path / "run", "--epochs",
           "1"], str(real_files["test"]), "training classes")
    fails(["train", real_files["train"], "--model", "smote", "--other-flows", real_files["test"], "--out",
           tmp_path / "run"], "--other-flows", "smote")
    fails(["train", real_files["train"], "--other-share", "1", "--out", tmp_path / "run"], "--other-share")
    assert not (tmp_path / "run").exists()


def test_train_needs_two_labelled_classes(demo_split, tmp_path):
    one = tmp_path / "one.parquet"
    write_flows(one, [f for f in demo_split[0] if f.label == "dns"])
    fails(["train", one, "--out", tmp_path / "run", "--epochs", "1"], str(one), "2 classes")


@pytest.mark.parametrize("args,option", [(["--max-packets", "0"], "--max-packets"),
                                         (["--max-packets", "-5"], "--max-packets"),
                                         (["--idle-timeout", "-1"], "--idle-timeout"),
                                         (["--active-timeout", "0"], "--active-timeout")])
def test_ingest_options(tmp_path, args, option):
    fails(["ingest", CAPTURES / "dns", *args, "--out", tmp_path / "f.parquet"], option)


def test_ingest_of_a_folder_without_captures(tmp_path):
    (tmp_path / "notes.txt").write_text("no capture here")
    fails(["ingest", tmp_path, "--out", tmp_path / "f.parquet"], "no .pcap, .pcapng or .cap file")


@pytest.mark.parametrize("damage", ["gzip-garbage", "truncated-gzip", "binary"])
def test_bad_labels_file(tmp_path, damage):
    labels = tmp_path / ("labels.csv.gz" if "gzip" in damage else "labels.csv")
    good = gzip.compress(b"file,src_ip,src_port,dst_ip,dst_port,protocol,application_name\n" + b"x,1,2,3,4,6,DNS\n" * 500)
    labels.write_bytes({"gzip-garbage": good[:10] + os.urandom(200), "truncated-gzip": good[: len(good) // 2],
                        "binary": bytes(range(256)) * 4}[damage])
    fails(["ingest", CAPTURES / "dns", "--labels", labels, "--out", tmp_path / "f.parquet"], str(labels))


def test_evaluate_empty_or_disjoint(real_files, demo_split, tmp_path):
    empty = tmp_path / "empty.parquet"
    write_flows(empty, [])
    fails(["evaluate", "--real-test", empty, "--synthetic", real_files["test"]], str(empty))
    fails(["evaluate", "--real-test", real_files["test"], "--synthetic", empty], str(empty))
    other = tmp_path / "other.parquet"
    write_flows(other, [f.__class__(**{**f.__dict__, "label": "elsewhere"}) for f in demo_split[1][:20]])
    fails(["evaluate", "--real-test", real_files["test"], "--synthetic", other], str(other), "class")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _flip(path: Path, at: int = 1000) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_runs_are_refused(tiny_run, tmp_path):
    """A flipped byte, a truncated weights file, a config that is not YAML: every command that reads the run names
    the file; a config edited together with its manifest is still checked field by field."""
    flipped = _copy(tiny_run, tmp_path / "flipped")
    _flip(flipped / "model.safetensors")
    truncated = _copy(tiny_run, tmp_path / "truncated")
    (truncated / "model.safetensors").write_bytes((tiny_run / "model.safetensors").read_bytes()[:5000])
    for run in (flipped, truncated):
        for args in (["generate", run, "--n-per-class", "2", "--out", tmp_path / "x.parquet"],
                     ["export", run, "--out", tmp_path / "b"], ["quantize", run, "--scheme", "int8-wo",
                                                               "--out", tmp_path / "q"]):
            fails(args, "model.safetensors", "sha256")
    not_yaml = _copy(tiny_run, tmp_path / "not_yaml")
    (not_yaml / "config.yaml").write_text("model: [unclosed\n")
    fails(["generate", not_yaml, "--out", tmp_path / "x.parquet"], "config.yaml")
    typed = _copy(tiny_run, tmp_path / "typed")  # edited, and the manifest rewritten to match: the fields are checked
    cfg = yaml.safe_load((typed / "config.yaml").read_text())
    cfg["model"]["dim"] = "wide"
    (typed / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_manifest(typed, RUN_FORMAT, ["model.safetensors", "config.yaml"])
    fails(["generate", typed, "--out", tmp_path / "x.parquet"], "config.yaml", "dim")
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "b").exists() and not (tmp_path / "q").exists()


def test_bundle_without_manifest_is_not_taken_for_a_run(tiny_bundles, tmp_path):
    bare = _copy(tiny_bundles["int8"], tmp_path / "bare")
    (bare / MANIFEST).unlink()
    fails(["generate", bare, "--out", tmp_path / "x.parquet"], str(bare), "manifest.json")
    fails(["info", bare], str(bare), "manifest.json")


def test_export_refuses_a_quantized_run(tiny_run, tmp_path):
    q = tmp_path / "q"
    assert CliRunner().invoke(main, ["quantize", str(tiny_run), "--scheme", "int8-wo", "--out", str(q)]).exit_code == 0
    fails(["export", q, "--out", tmp_path / "b"], str(q), "fp32")
    fails(["export", tiny_run, "--format", "tensorrt", "--int8", "--out", tmp_path / "b"], "--int8")


def _without_torch(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    """The CLI in a process where `import torch` fails, as on the edge install."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True, exist_ok=True)
    (block / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "from ntg_edge.appliance.cli import main; main()", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_edge_install_says_what_a_folder_is(tiny_run, tiny_bundles, tmp_path):
    res = _without_torch(tmp_path, "generate", tiny_run, "--out", tmp_path / "x.parquet")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "a training run" in res.stderr and "ntg-edge export" in res.stderr
    bare = _copy(tiny_bundles["int8"], tmp_path / "bare")
    (bare / MANIFEST).unlink()
    res = _without_torch(tmp_path, "generate", bare, "--out", tmp_path / "x.parquet")
    assert res.returncode != 0 and "Traceback" not in res.stderr and "manifest.json" in res.stderr
    for args in (["train", tiny_run / "config.yaml", "--out", tmp_path / "r"], ["export", tiny_run, "--out", tmp_path / "b"],
                 ["quantize", tiny_run, "--scheme", "int8-wo", "--out", tmp_path / "q"]):
        res = _without_torch(tmp_path, *args)
        assert res.returncode != 0 and "Traceback" not in res.stderr and "ntg-edge[train]" in res.stderr, res.stderr
    res = _without_torch(tmp_path, "info", tiny_run)  # info reads configs only: it works without torch
    assert res.returncode == 0 and "parameters" in res.stdout, res.stderr
    assert "epoch 3: val TSTR" in res.stdout and "(mean of 3 epochs" in res.stdout  # 3 epochs: only the last scored


def test_damage_behind_a_rewritten_manifest(tiny_run, tiny_bundles, real_files, tmp_path):
    """What the fuzzer found: files damaged and the manifest rewritten to match, so the damage reaches the loaders."""
    sizes = _copy(tiny_run, tmp_path / "sizes")
    cfg = yaml.safe_load((sizes / "config.yaml").read_text())
    cfg["model"]["vocab_size"] = -3
    (sizes / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_manifest(sizes, RUN_FORMAT, ["model.safetensors", "config.yaml"])
    fails(["generate", sizes, "--out", tmp_path / "x.parquet"], "config.yaml", "vocab_size")
    graph = _copy(tiny_bundles["int8"], tmp_path / "graph")
    (graph / "model.onnx").write_bytes((graph / "model.onnx").read_bytes()[:1000])  # not a graph any more
    write_manifest(graph, "ntg-edge-bundle/1")
    fails(["generate", graph, "--out", tmp_path / "x.parquet"], "model.onnx")
    listed = _copy(tiny_run, tmp_path / "listed")
    (listed / MANIFEST).write_text('{"format": "ntg-edge-run/1", "files": [1]}')
    fails(["info", listed], "manifest.json")
    flipped = _copy(tiny_run, tmp_path / "flipped")
    _flip(flipped / "config.yaml", 10)
    out = fails(["info", flipped], "manifest.json")
    assert "FAILED" in out and "config.yaml" in out
    empty = tmp_path / "empty.parquet"
    write_flows(empty, [])
    fails(["bench", "parity", tiny_run, "--real-train", real_files["train"], "--real-test", empty, "--draws", "2"],
          "--real-test")
    fails(["generate", tiny_run, "--n-per-class", "1", "--out", str(real_files["train"]) + "/"], "names a folder")


def test_missing_choice_option_is_one_line_with_its_values(tiny_run, tmp_path):
    """click writes a missing choice's values one per line; ours is one line that names them."""
    out = fails(["quantize", tiny_run, "--out", tmp_path / "q"], "--scheme")
    (line,) = [line for line in out.splitlines() if line.startswith("Error")]
    assert "int8-wo, int8-da" in line and out.rstrip().endswith(line)
