"""The `ntg-edge` command line. Commands that need torch import it inside the command, so the edge install works.

Every error a user can cause ends as one line naming the file or option (click's usage errors, or a ValueError /
OSError raised below the CLI, which `Cli` turns into one), never as a traceback.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from click.core import ParameterSource

from ..runtime.ingest import Assembly
from ..runtime.knobs import SEED_MAX
from ..runtime.ort import PROVIDERS as DEVICES
from ..runtime.sampler import Sampling
from ..runtime.split import SplitConfig
from ..runtime.settings import MODEL_CONFIGS, MODELS, TrainConfig
from ..runtime.settings import BASELINE_CONFIGS
from .options import (OutPath, config_options, model_options, model_settings, out_dir, out_file, positive_ints,
                      shared_notes)



class Cli(click.Group):
    """The command group; a ValueError or OSError from a command is reported as its one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.MissingParameter as e:  # click lists a missing choice's values one per line
            p = e.param
            if p is None:
                raise
            values = f" (one of {', '.join(p.type.choices)})" if isinstance(p.type, click.Choice) else ""
            raise click.UsageError(f"missing {p.param_type_name} {p.get_error_hint(e.ctx)}{values}", e.ctx) from None
        except (ValueError, OSError) as e:
            raise click.ClickException(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="ntg-edge")
def main() -> None:
    """Learn real network traffic and generate synthetic flows."""


def _require_train(what: str) -> None:
    """Commands that train, quantize or export need torch: say so in one line on the edge install."""
    import importlib

    missing = []
    for name in ("torch", "onnx"):  # imported, not only looked up: a broken install fails here too
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise click.ClickException(f"{what} needs {' and '.join(missing)}: pip install 'ntg-edge[train]' (this is "
                                   "the edge install, which ingests, generates from bundles and serves)")


def _flows(path: str) -> list:
    from ..runtime.flows import read_flows

    return read_flows(path)


def _write_flows(path: str, flows: list) -> None:
    from ..runtime.flows import write_flows

    write_flows(path, flows)


def _check_out(path: str) -> None:
    """Refuse an output name the flows writer does not write, before any work."""
    from ..runtime.flows import check_output

    try:
        check_output(path)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--out") from None


def _write_json(path: str, rep: dict) -> None:
    import json

    from ..runtime.flows import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(rep, indent=2, default=float)))


# -- ingest, split ------------------------------------------------------------------------------------------------------
@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="Labels CSV (gzip or plain): file, src_ip, src_port, dst_ip, dst_port, protocol, application_name.")
@click.option("--label-from", type=click.Choice(["folder", "file"]),
              help="Label = each capture's parent folder name or file stem.")
@config_options(Assembly)
@click.option("--bpf", help="BPF filter applied while reading, e.g. 'tcp port 443'.")
@click.option("--interface", help="Capture live from this interface instead of reading files.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Seconds of live capture.")
@out_file("Flows file (Parquet) to write.")
def ingest(paths, labels, label_from, bpf, interface, duration, out, **kw) -> None:
    """Assemble captures (pcap/pcapng/cap files, directories, or a live interface) into a flows file."""
    from ..runtime.ingest import ingest_live, ingest_paths
    from ..runtime.pcap import CaptureError

    if labels and label_from:
        raise click.UsageError("use --labels or --label-from, not both")
    if bool(paths) == bool(interface):
        raise click.UsageError("give capture PATHs or --interface (with --duration), not both")
    if interface and not duration:
        raise click.UsageError("--interface needs --duration SECONDS")
    _check_out(out)
    try:
        if interface:
            flows, report = ingest_live(interface, duration, bpf, Assembly(**kw))
        else:
            flows, report = ingest_paths(paths, labels, label_from, bpf, Assembly(**kw))
    except CaptureError as e:
        raise click.ClickException(str(e)) from None
    if not report.files:
        why = "see the warnings above" if report.warnings else "no .pcap, .pcapng or .cap file under the given paths"
        raise click.ClickException(f"no capture could be read ({why})")
    for line in report.lines():
        click.echo(line)
    _write_flows(out, flows)
    click.echo(f"{len(flows)} flows -> {out}")


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--from", "tool", required=True, type=click.Choice(["nfstream", "cesnet"]),
              help="nfstream: NFStream's splt_direction/splt_ps/splt_piat_ms columns; cesnet: CESNET DataZoo's PPI "
                   "arrays (IPT ms, DIR, SIZE). CSV (plain or gzip) or Parquet.")
@click.option("--label-column", help="Column holding the class (default: application_name for nfstream, APP for "
                                     "cesnet).")
@out_file("Flows file (Parquet) to write.")
def import_flows(path, tool, label_column, out) -> None:
    """Turn flows extracted by another tool into a flows file."""
    from ..runtime.importers import import_cesnet, import_nfstream

    _check_out(out)
    reader = import_nfstream if tool == "nfstream" else import_cesnet
    flows = reader(path, label_column) if label_column else reader(path)
    _write_flows(out, flows)
    click.echo(f"{len(flows)} flows of {len({f.label for f in flows})} classes -> {out}")


@main.command()
@click.argument("flows", type=click.Path(exists=True, dir_okay=False))
@out_dir("Directory for train.parquet, test.parquet and other.parquet.")
@config_options(SplitConfig)
def split(flows, out, **kw) -> None:
    """Benchmark split of a labelled flows file: label = last dotted component, caps, stratified train/test; the
    dropped classes' flows from captures without a test flow go to other.parquet (train --other-flows)."""
    from ..runtime.split import format_table, other_flows, split_flows

    config, data = SplitConfig(**kw), _flows(flows)
    try:
        train_set, test_set, table = split_flows(data, config)
    except ValueError as e:
        raise click.ClickException(f"{flows}: {e}") from None
    other = other_flows(data, train_set, test_set, config)
    _write_flows(Path(out) / "train.parquet", train_set)
    _write_flows(Path(out) / "test.parquet", test_set)
    _write_flows(Path(out) / "other.parquet", other)
    for line in format_table(table):
        click.echo(line)
    click.echo(f"{len(train_set)} train, {len(test_set)} test, {len(other)} other flows -> {out}")


# -- train, generate ----------------------------------------------------------------------------------------------------
SETTINGS = {**MODEL_CONFIGS, **BASELINE_CONFIGS}  # --model NAME -> its settings
# Options the training loop and some baselines both have (--epochs, --batch-size, --lr): declared once, as the loop's
SHARED = shared_notes(BASELINE_CONFIGS, TrainConfig)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the command line (or the environment) set option `name`, rather than its default."""
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


@main.command()
@click.argument("flows", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_type", type=click.Choice(MODELS), default=MODELS[0], show_default=True,
              help="Generator architecture, or one of the reference study's baselines.")
@out_dir("Run directory to write.")
@click.option("--other-flows", type=click.Path(exists=True, dir_okay=False),
              help="Flows of other classes (split's other.parquet), learnt with the class hidden: more traffic to "
                   "learn from; see --other-share.")
@model_options(SETTINGS, exclude=tuple(SHARED))
@config_options(TrainConfig, notes=SHARED)
@click.pass_context
def train(ctx, flows, model_type, out, other_flows, **kw) -> None:
    """Train a class-conditioned generator on a labelled flows file (labels = classes).

    A baseline (--model cvae, gasf, smote or fast_retransmit) is fitted with its own options; of the training loop's
    options it takes --seed and those it has itself, and refuses the others."""
    _require_train("train")
    from ..train.train import train as run_training

    mc = model_settings(model_type, SETTINGS, kw, exclude=tuple(SHARED))
    if model_type in BASELINE_CONFIGS:
        if other_flows:
            raise click.UsageError(f"--other-flows: not an option of --model {model_type}")
        return _fit_baseline(ctx, flows, model_type, out, mc, kw)
    try:  # the cross-field rules, before any work
        MODEL_CONFIGS[model_type](vocab_size=1, iat_bins=1, block_size=1, **mc)
        config = TrainConfig(**kw)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    data, other = _flows(flows), _flows(other_flows) if other_flows else []
    try:
        summary = run_training(data, out, mc, config, log=click.echo, model_type=model_type, other=other)
    except ValueError as e:
        raise click.ClickException(f"{other_flows if str(e).startswith('other flows') else flows}: {e}") from None
    sel = summary["selected"]
    window = f", mean of {sel['val_window']} epochs {sel['val_score']:.3f}" if sel["val_window"] > 1 else ""
    refit = ", refit on every flow" if kw.get("refit") else ""
    click.echo(f"kept epoch {sel['epoch']} (val TSTR {sel['val_tstr']:.3f}{window}, copy rate "
               f"{sel['val_copy_rate']:.2f} <= natural {summary['natural_copy_rate']:.2f}){refit} -> {out}")


def _fit_baseline(ctx: click.Context, flows: str, name: str, out: str, settings: dict, loop: dict) -> None:
    """`train --model BASELINE`: fit it on the flows (train/synthesizer.py) and write it as a run directory."""
    import time

    import torch

    from ..train.checkpoint import check_out, save_baseline
    from ..train.synthesizer import make_baseline

    config = BASELINE_CONFIGS[name]
    own = {f.name for f in dataclasses.fields(config)}
    for k, v in loop.items():  # the training loop's options: --seed, and those the baseline has too
        if k == "seed" or not _given(ctx, k):
            continue
        if k not in own:
            raise click.UsageError(f"--{k.replace('_', '-')}: not an option of --model {name}")
        settings[k] = v
    try:  # the cross-field rules, before any work
        config = config(**settings)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    check_out(out)
    data = _flows(flows)
    baseline = make_baseline(name, threads=torch.get_num_threads(), log=click.echo, config=config)
    start = time.perf_counter()
    try:
        baseline.fit(data, loop["seed"])
    except ValueError as e:
        raise click.ClickException(f"{flows}: {e}") from None
    fit_s = time.perf_counter() - start
    save_baseline(out, baseline, {"train": {"flows": len(data), "seed": loop["seed"], "fit_s": round(fit_s, 2)}})
    click.echo(f"{name}: fitted on {len(data)} flows of {len(baseline.classes)} classes in {fit_s:.1f} s -> {out}")


def open_engine(path: str, device: str = "auto"):
    """(Engine, Tokenizer) of a bundle (ONNX Runtime / TensorRT, no torch) or a training run (torch, imported here).
    For a bundle, `device` is the provider: auto, cpu, cuda or tensorrt; a run runs on torch: auto, cpu or cuda."""
    from ..runtime.bundle import load_bundle
    from ..runtime.manifest import BUNDLE_FORMAT, RUN_FORMAT, read_format

    fmt = read_format(path)
    if fmt == BUNDLE_FORMAT:
        return load_bundle(path, device)
    if fmt != RUN_FORMAT:
        raise click.ClickException(f"{path}: neither a training run nor a bundle (no readable manifest.json)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise click.ClickException(
            f"{path}: a training run, which needs torch (pip install 'ntg-edge[train]'); this install runs bundles: "
            f"`ntg-edge export {path} --int8 --out BUNDLE` where torch is installed") from None
    if device == "tensorrt":
        raise click.UsageError(f"--device tensorrt: {path} is a training run (torch: auto, cpu or cuda); "
                               "export a bundle for TensorRT")
    from ..train.checkpoint import load_run
    from ..train.engine import TorchEngine
    from ..train.train import resolve_device

    model, tok = load_run(path, resolve_device(device))
    return TorchEngine(model), tok


# generate's options that only the autoregressive sampler of llama and mamba runs and bundles takes
SAMPLER_ONLY = (*(f.name for f in dataclasses.fields(Sampling)), "batch_size", "device")


@main.command()
@click.argument("model_path", metavar="RUN_OR_BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--n-per-class", type=click.IntRange(min=1), help="Flows per class (default 100, unless --counts-from).")
@click.option("--counts-from", type=click.Path(exists=True, dir_okay=False),
              help="Reproduce the per-class counts of this flows file (e.g. the real training split).")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True),
              help="Multiply the --counts-from counts (e.g. 10 for ten times as many).")
@click.option("--classes", help="Comma-separated subset of the model's classes.")
@config_options(Sampling)
@click.option("--batch-size", default=1024, show_default=True, type=click.IntRange(min=1), help="Flows per batch.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, SEED_MAX),
              help="The same seed, the same flows.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Bundle: ONNX Runtime provider; run: torch device.")
@out_file("Synthetic flows file (Parquet).")
@click.pass_context
def generate(ctx, model_path, n_per_class, counts_from, scale, classes, batch_size, seed, device, out, **kw) -> None:
    """Generate labelled synthetic flows from a trained run or a bundle; the same seed gives the same flows.

    A baseline's run (train --model cvae, gasf, smote or fast_retransmit) samples with its own method: the sampling
    options (temperature, top-k, top-p, stratified, guidance), --batch-size and --device are refused for it."""
    from tqdm import tqdm

    from ..runtime.sampler import generate as sample_flows
    from ..train.synthesizer import baseline_name, load_baseline

    if n_per_class is not None and counts_from:
        raise click.UsageError("--n-per-class and --counts-from both set the counts: give one")
    if scale is not None and not counts_from:
        raise click.UsageError("--scale multiplies the --counts-from counts: give --counts-from")
    _check_out(out)
    name = baseline_name(model_path)
    if name:
        for p in ctx.command.params:
            if p.name in SAMPLER_ONLY and _given(ctx, p.name):
                flag = "/".join(p.opts + p.secondary_opts)  # a switch is named by both its forms
                raise click.UsageError(f"{flag}: an option of llama and mamba runs and bundles; "
                                       f"{model_path} is a {name} baseline run")
        try:  # CVAE and GASF need torch, SMOTE imbalanced-learn
            baseline = load_baseline(model_path)
            counts = _counts(baseline.classes, classes, n_per_class, counts_from, scale)
            flows = baseline.sample(counts, seed)
        except ImportError as e:
            raise click.ClickException(f"{model_path}: a {name} baseline run, which needs the train extra ({e}): "
                                       "pip install 'ntg-edge[train]'") from None
    else:
        engine, tok = open_engine(model_path, device)
        counts = _counts(tok.classes, classes, n_per_class, counts_from, scale)
        flows = []
        with tqdm(total=sum(counts.values()), desc="generate", unit="flow", disable=None) as bar:
            for batch in sample_flows(engine, tok, counts, Sampling(**kw), batch_size, seed):
                flows += batch
                bar.update(len(batch))
    _write_flows(out, flows)
    click.echo(f"{len(flows)} flows of {len({f.label for f in flows})} classes -> {out}")


def _counts(known: list[str], classes: str | None, n_per_class: int | None, counts_from: str | None,
            scale: float | None) -> dict[str, int]:
    """generate's flows per class: of the --classes subset of the model's `known` classes (all by default)."""
    from ..runtime.sampler import class_counts

    wanted = classes.split(",") if classes else list(known)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} not among the model's classes ({', '.join(known)})",
                                 param_hint="--classes")
    if not counts_from:
        return class_counts(wanted, n_per_class or 100)
    counts = class_counts(wanted, like=_flows(counts_from), scale=scale or 1.0)
    if not counts:
        raise click.ClickException(f"{counts_from}: no flow of the model's classes ({', '.join(wanted)})")
    return counts


# -- evaluate -----------------------------------------------------------------------------------------------------------
_ROWS = ["pkt_count_jsd", "1gram_jsd", "2gram_jsd", "markov_jsd", "uniq_align", "leakage", "copy_rate", "tstr_f1"]


def _report_table(rep: dict) -> str:
    sd = rep["synthetic_sd"] if rep["draws"] > 1 else {}
    syn = {k: f"{v:.3f}" + (f" ± {sd[k]:.3f}" if k in sd else "") for k, v in rep["synthetic"].items()}
    cols = {"synthetic": syn}
    if "real_floor" in rep:
        cols["real_floor"] = {k: f"{v:.3f}" for k, v in rep["real_floor"].items()}
    width = max(14, *(len(v) + 2 for c in cols.values() for v in c.values()))
    lines = [f"{'metric':<16}" + "".join(f"{c:>{width}}" for c in cols)]
    for r in _ROWS:
        if any(r in c for c in cols.values()):
            lines.append(f"{r:<16}" + "".join(f"{c.get(r, 'nan'):>{width}}" for c in cols.values()))
    if "ratio" in rep:
        lines.append(f"{'TSTR / TRTR':<16}{rep['ratio']['tstr_over_trtr']:>{width}.3f}")
    if rep["draws"] > 1:
        lines.append(f"synthetic: mean ± sd over {rep['draws']} draws "
                     "(each with its own forest seed; TRTR over the same seeds)")
    return "\n".join(lines)


@main.command()
@click.option("--real-test", required=True, type=click.Path(exists=True, dir_okay=False), help="Real test flows.")
@click.option("--synthetic", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Synthetic flows; repeat for several draws (generation seeds) to get mean ± sd.")
@click.option("--real-train", type=click.Path(exists=True, dir_okay=False),
              help="Real training flows: adds leakage, copy rate and the real-vs-real floor (TRTR).")
@click.option("--json", "json_out", type=OutPath(dir_okay=False), help="Also write the report as JSON.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, SEED_MAX), help="Forest seed.")
def evaluate(real_test, synthetic, real_train, json_out, seed) -> None:
    """Fidelity (JSDs, UniqAlign, leakage, copy rate) and TSTR of synthetic flows against real ones."""
    from ..runtime.metrics import evaluate as run_eval

    real = _flows(real_test)
    draws = [_flows(p) for p in synthetic]
    labels = {f.label for f in real}
    if not real:
        raise click.ClickException(f"{real_test}: no flows")
    for path, syn in zip(synthetic, draws):
        if not labels & {f.label for f in syn}:
            raise click.ClickException(f"{path}: no flow of a class in {real_test} ({', '.join(sorted(labels))})")
    rep = run_eval(real, draws, _flows(real_train) if real_train else None, seed)
    click.echo("JSD: 0 = same distribution (macro over classes); floor = real train vs real test; "
               "copy_rate under real_floor = the natural rate")
    click.echo(_report_table(rep))
    if json_out:
        _write_json(json_out, rep)


# -- quantize, export, info ---------------------------------------------------------------------------------------------
@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--scheme", required=True, type=click.Choice(["int8-wo", "int8-da"]),
              help="torchao int8 weight-only, or int8 dynamic activation + int8 weight.")
@click.option("--keep-embedding-fp32", is_flag=True, help="Leave the tied token embedding/head matrix fp32.")
@out_dir("Quantized run directory to write.")
def quantize(run, scheme, keep_embedding_fp32, out) -> None:
    """Post-training int8 quantization (torchao) of a trained run into a run directory `generate` can use."""
    _require_train("quantize")
    from ..train.checkpoint import quantize_run

    r = quantize_run(run, scheme, out, embedding=not keep_embedding_fp32)
    click.echo(f"{scheme}: {r['fp32_bytes'] / 1e6:.2f} MB fp32 -> {r['int8_bytes'] / 1e6:.2f} MB on disk; logits "
               f"max |err| {r['max_abs_logit_err']:.3f} (max |logit| {r['logit_scale']:.1f}), top-1 agreement "
               f"{r['top1_agree']:.3f}, KL {r['kl_nats']:.1e} nats -> {out}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True,
              help="tensorrt = the ONNX bundle plus an fp16 TensorRT engine (model.plan) built on this machine's GPU.")
@click.option("--int8", is_flag=True, help="int8 weights (ONNX Runtime dynamic quantization).")
@out_dir("Bundle directory to write.")
def export(run, fmt, int8, out) -> None:
    """Export a trained run to a self-contained, hash-checked bundle that `generate` runs without torch."""
    _require_train("export")
    from ..export.bundle import export_bundle
    from ..export.tensorrt import TensorRTUnavailable

    if fmt == "tensorrt" and int8:
        raise click.UsageError("--format tensorrt builds an fp16 engine; --int8 applies to --format onnx")
    try:
        export_bundle(run, out, int8=int8, tensorrt=fmt == "tensorrt", log=click.echo)
    except FileExistsError as e:
        raise click.ClickException(str(e)) from None
    except (TensorRTUnavailable, RuntimeError) as e:  # TensorRT missing, or its parser or builder failed
        raise click.ClickException(str(e).strip().splitlines()[0]) from None


@main.command()
@click.argument("path", metavar="RUN_OR_BUNDLE", type=click.Path(exists=True, file_okay=False))
def info(path) -> None:
    """What a run or bundle holds: classes, model, parameters, size, precision, source, chosen epoch, hashes (exit 1
    when a file does not match its hash)."""
    from ..runtime.info import describe

    lines, verified = describe(path)
    for line in lines:
        click.echo(line)
    if not verified:
        raise click.ClickException(f"{path}: files do not match manifest.json (see above)")


# -- bench --------------------------------------------------------------------------------------------------------------
@main.group(cls=Cli)
def bench() -> None:
    """Benchmarks that print figures: generation speed, quantization/export parity, ingest throughput."""


@bench.command("speed")
@click.argument("paths", metavar="RUN_OR_BUNDLE...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--batch-sizes", default="1,64,1024", show_default=True, callback=positive_ints)
@click.option("--flows-b1", default=200, show_default=True, type=click.IntRange(min=1),
              help="Flows generated one at a time at batch 1.")
@click.option("--batches", "n_batches", default=3, show_default=True, type=click.IntRange(min=1),
              help="Interleaved rounds; each times one batch of every variant at each batch size > 1.")
@click.option("--length", default=10, show_default=True, type=click.IntRange(min=1), help="Packets per flow.")
@click.option("--no-peer", is_flag=True, help="Skip the Hugging Face LlamaForCausalLM comparison.")
@click.option("--json", "json_out", type=OutPath(dir_okay=False), help="Also write the report as JSON.")
def bench_speed(paths, batch_sizes, flows_b1, n_batches, length, no_peer, json_out) -> None:
    """ms per flow and flows/s of every variant (torch, torchao int8, ONNX fp32/int8) and of HF transformers.

    Several runs or bundles are timed in the same interleaved rounds, so that they compare on a machine whose speed
    drifts; a target reads the first that has its variant, the peer the first."""
    import tempfile

    from ..bench.speed import format_speed, run_speed

    with tempfile.TemporaryDirectory(prefix="ntg-bench-") as work:
        rep = run_speed(list(paths), work, batch_sizes, flows_b1, n_batches, length, peer=not no_peer,
                        log=click.echo)
    click.echo(format_speed(rep))
    if json_out:
        _write_json(json_out, rep)


@bench.command("parity")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--real-train", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--real-test", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--n-per-class", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--draws", default=8, show_default=True, type=click.IntRange(min=2),
              help="fp32 generations that set its sampling interval.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, SEED_MAX))
@click.option("--json", "json_out", type=OutPath(dir_okay=False), help="Also write the report as JSON.")
def bench_parity(run, real_train, real_test, n_per_class, draws, seed, json_out) -> None:
    """Fidelity and TSTR of every variant against fp32; exits 1 when a variant disagrees with fp32."""
    import tempfile

    from ..bench.parity import format_parity, run_parity

    with tempfile.TemporaryDirectory(prefix="ntg-parity-") as work:
        rep = run_parity(run, work, _flows(real_train), _flows(real_test), n_per_class, draws, seed, log=click.echo)
    click.echo(format_parity(rep))
    if json_out:
        _write_json(json_out, rep)
    failed = [n for n, ok in rep["pass"].items() if not ok]
    if failed:
        click.echo(f"parity FAILED: {', '.join(failed)}", err=True)
        raise SystemExit(1)


@bench.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "json_out", type=OutPath(dir_okay=False), help="Also write the report as JSON.")
def bench_ingest(paths, json_out) -> None:
    """Ingest throughput over capture files or folders (e.g. the nDPI corpus' pcaps/), in one process."""
    from ..bench.ingest import format_ingest, run_ingest

    rep = run_ingest(list(paths))
    click.echo(format_ingest(rep))
    if json_out:
        _write_json(json_out, rep)


def _register() -> None:
    """Commands defined beside what they run; imported here, so `ntg-edge --help` lists them."""
    from ..bench.fuzz import fuzz
    from ..bench.paper import paper_command
    from ..bench.serve import serve_bench
    from ..bench.steps import steps_command
    from .serve import serve

    main.add_command(serve)
    bench.add_command(fuzz)
    bench.add_command(paper_command)
    bench.add_command(serve_bench)
    bench.add_command(steps_command)


_register()

if __name__ == "__main__":
    main()
