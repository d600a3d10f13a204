"""`ntg-edge bench paper` on the shipped captures' split: every research question answered with numbers in range, the
report and plots written, generator runs trained side by side and reused, and option errors as one line. Tiny budgets
(LLaMA 1 epoch, one draw, one fraction below 100%): what it reports, not how well the methods do."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from ntg_edge.appliance.cli import main
from ntg_edge.bench.paper import FIDELITY, QUICK, RADAR, Generator, kept_flows, subset
from ntg_edge.runtime.flows import read_flows

PNG = b"\x89PNG\r\n\x1a\n"
METHODS = ("llama", "smote", "fast_retransmit")


def unit(x: float) -> bool:
    return 0.0 <= x <= 1.0


def test_bench_paper_report(real_files, tmp_path):
    out = tmp_path / "paper"
    res = CliRunner().invoke(main, ["bench", "paper", "--real-train", str(real_files["train"]), "--real-test",
                                    str(real_files["test"]), "--methods", ",".join(METHODS), "--quick",
                                    "--epochs", "1", "--jobs", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("fidelity_radar.png", "tstr.png", "augmentation.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    rep = json.loads((out / "report.json").read_text())
    assert rep["meta"]["methods"] == list(METHODS) and rep["meta"]["plan"]["draws"] == 1
    assert re.fullmatch(r"[0-9a-f]{7,}(\+changes)?", rep["meta"]["code"])  # this test runs in a git checkout

    rq1 = rep["rq1"]
    assert set(rq1["real_floor"]) >= set(FIDELITY) and all(unit(v) for v in rq1["real_floor"].values())
    for m in METHODS:
        assert set(rq1["methods"][m]) == set(FIDELITY)
        assert all(unit(v["mean"]) and v["sd"] == 0 for v in rq1["methods"][m].values())  # one draw: sd 0
        assert set(rq1["radar"][m]) == set(RADAR) and all(unit(v) for v in rq1["radar"][m].values())

    rq2 = rep["rq2"]
    assert 0.5 < rq2["trtr"]["mean"] <= 1  # five very different services: a forest on real flows separates them
    assert all(unit(rq2["methods"][m]["mean"]) and rq2["methods"][m]["ratio"] >= 0 for m in METHODS)

    rq3 = rep["rq3"]
    assert rq3["fractions"] == [0.1, 1.0]
    assert 0 < rq3["kept_flows"]["10%"] < rep["meta"]["train_flows"]
    for series in [rq3["real_only"], *rq3["methods"].values()]:
        assert set(series) == {"10%", "100%"} and all(unit(v["mean"]) for v in series.values())
    assert all(rq3["methods"][m]["100%"] == rq3["real_only"]["100%"] for m in METHODS)  # nothing missing at 100%

    rows = rep["rq4"]["rows"]
    llama = {r["variant"]: r for r in rows if r["method"] == "llama"}
    assert {"torch fp32", "onnx int8"} <= set(llama)
    assert llama["onnx int8"]["size_bytes"] < llama["torch fp32"]["size_bytes"]
    assert llama["torch fp32"]["s_per_epoch"] > 0 and llama["torch fp32"]["params"] > 0
    assert {r["method"] for r in rows} == set(METHODS)
    assert all(r["ms_per_flow_b1"] > 0 and r["ms_per_flow_b1024"] > 0 and r["fit_s"] >= 0 for r in rows)

    assert all(rep["conclusions"][q] for q in ("rq1", "rq2", "rq3", "rq4"))
    md = (out / "report.md").read_text()
    for part in ("## RQ1", "## RQ2", "## RQ3", "## RQ4", "fidelity_radar.png", "augmentation.png", "--quick",
                 *rep["conclusions"]["rq2"]):
        assert part in md, part
    assert (out / "runs" / "llama-10pct").is_dir() and (out / "synthetic" / "smote.parquet").is_file()

    # --jobs 2 trained both LLaMA runs side by side, and the report's own fits reused them rather than retraining
    assert "LLaMA was trained on cpu, 2 fits side by side" in md
    train, _ = subset(read_flows(real_files["train"]), read_flows(real_files["test"]), QUICK, 0)
    gen = Generator("llama", out / "runs" / "llama", 1)
    assert gen.trained(train, 0)["fit_s"] == llama["torch fp32"]["fit_s"]
    assert gen.trained(train[1:], 0) is None and gen.trained(train, 1) is None  # other flows, other seed
    assert Generator("llama", out / "runs" / "llama", 2).trained(train, 0) is None  # other epochs


def test_kept_flows_are_nested_and_keep_two_per_class(demo_split):
    train = demo_split[0]
    small, large = kept_flows(train, 0.05, 0), kept_flows(train, 0.2, 0)
    ids = {id(f) for f in large}
    assert all(id(f) in ids for f in small)  # a smaller fraction's flows are among a larger one's
    classes = {f.label for f in train}
    assert {f.label for f in small} == classes and all(sum(f.label == c for f in small) >= 2 for c in classes)
    assert kept_flows(train, 0.05, 0) == small and kept_flows(train, 0.05, 1) != small  # seeded


@pytest.mark.parametrize("args,named", [
    (["--methods", "llama,gpt"], "gpt"),
    (["--fractions", "5,150"], "--fractions"),
    (["--real-train", "{train}"], "--real-test"),
    (["--ndpi", "{missing}"], "nDPI"),
])
def test_bench_paper_option_errors_are_one_line(real_files, tmp_path, args, named):
    args = [a.format(train=real_files["train"], missing=tmp_path / "none") for a in args]
    res = CliRunner().invoke(main, ["bench", "paper", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code not in (0, None) and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and named in errors[0], res.output
