"""The CLI fuzz benchmark (bench/fuzz.py) on a few cases per command: no bad input may end in a traceback. This test
fails whenever some command lets an exception escape: that is its purpose (README "Reliability")."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from ntg_edge.bench.fuzz import CATEGORIES, Case, build_case, build_material, classify, format_fuzz, run_fuzz


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    """One work directory, so that the material (flows, a tiny run, a QRUN, a bundle) is built once."""
    return tmp_path_factory.mktemp("fuzz")


def test_no_traceback_on_random_options_and_damaged_inputs(fuzz_dir):
    rep = run_fuzz(fuzz_dir, cases_per_command=5, seed=1, log=print, subprocess_sample=0)
    assert rep["counts"] and all(sum(c[k] for k in CATEGORIES) == 5 for c in rep["counts"].values())
    assert rep["tracebacks"] == 0, format_fuzz(rep)  # the message lists each traceback with its reproduction


def test_cases_are_reproducible(fuzz_dir):
    """The same seed gives the same argv and the same damage, so a finding's reproduction holds."""
    m = build_material(fuzz_dir, log=lambda *_: None)
    first = [build_case(command, i, 3, m, fuzz_dir) for command in ("info", "train") for i in range(4)]
    again = [build_case(command, i, 3, m, fuzz_dir) for command in ("info", "train") for i in range(4)]
    assert [(c.argv, c.mutations) for c in first] == [(c.argv, c.mutations) for c in again]


def test_classify_wants_one_line_naming_the_option_or_file():
    cmd = click.Command("x", params=[click.Option(["--epochs"], type=int), click.Argument(["flows"])])
    case = Case("x", 0, ["/data/flows.parquet", "--epochs", "-1"])
    assert classify(case, 0, "", cmd, None)[0] == "ok"
    assert classify(case, 2, "Error: Invalid value for '--epochs': -1 is not in the range x>=1.", cmd, None)[0] \
        == "clean_error"
    assert classify(case, 1, "Error: /data/flows.parquet: row 3: pl has 2 entries, dir 3", cmd, None)[0] \
        == "clean_error"
    assert classify(case, 1, "Error: KeyError", cmd, None)[0] == "unnamed_error"
    assert classify(case, 1, "Error: 'utf-8' codec can't decode byte 0xd5 in position 2", cmd, None)[0] \
        == "unnamed_error"
    assert classify(case, 1, "Error: bad epochs value given here\n  and more", cmd, None)[0] == "unnamed_error"
