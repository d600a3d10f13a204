"""The `ntg-edge` command line. Commands that need torch import it inside the command, so the edge install works."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ntg-edge")
def main() -> None:
    """Learn real network traffic and generate synthetic flows."""


def _flows(path: str) -> list:
    from ..runtime.flows import read_flows

    try:
        return read_flows(path)
    except ValueError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="Labels CSV (gzip or plain): file, src_ip, src_port, dst_ip, dst_port, protocol, application_name.")
@click.option("--label-from", type=click.Choice(["folder", "file"]),
              help="Label = each capture's parent folder name or file stem.")
@click.option("--max-packets", default=64, show_default=True, help="Packets kept per flow.")
@click.option("--idle-timeout", default=120.0, show_default=True, help="Seconds without a packet that end a flow.")
@click.option("--active-timeout", default=1800.0, show_default=True, help="Seconds after which a flow is cut.")
@click.option("--tcp-end/--no-tcp-end", default=True, show_default=True,
              help="TCP FIN/RST end a flow (off: only the timeouts do, as in NFStream).")
@click.option("--bpf", help="BPF filter applied while reading, e.g. 'tcp port 443'.")
@click.option("--interface", help="Capture live from this interface instead of reading files.")
@click.option("--duration", type=float, help="Seconds of live capture (with --interface).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Flows file (Parquet) to write.")
def ingest(paths, labels, label_from, max_packets, idle_timeout, active_timeout, tcp_end, bpf, interface, duration,
           out) -> None:
    """Assemble captures (pcap/pcapng/cap files, directories, or a live interface) into a flows file."""
    from ..runtime.flows import write_flows
    from ..runtime.ingest import ingest_live, ingest_paths
    from ..runtime.pcap import CaptureError

    if labels and label_from:
        raise click.UsageError("use --labels or --label-from, not both")
    if bool(paths) == bool(interface):
        raise click.UsageError("give capture PATHs or --interface (with --duration), not both")
    if interface and not duration:
        raise click.UsageError("--interface needs --duration SECONDS")
    assembly = dict(bpf=bpf, max_packets=max_packets, idle_timeout=idle_timeout, active_timeout=active_timeout,
                    tcp_end=tcp_end)
    try:
        if interface:
            flows, report = ingest_live(interface, duration, **assembly)
        else:
            flows, report = ingest_paths(paths, labels=labels, label_from=label_from, **assembly)
    except (ValueError, CaptureError) as e:
        raise click.ClickException(str(e)) from None
    if not report.files:
        raise click.ClickException("no capture could be read (see the warnings above)")
    for line in report.lines():
        click.echo(line)
    write_flows(out, flows)
    click.echo(f"{len(flows)} flows -> {out}")


@main.command()
@click.argument("flows", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for train.parquet and test.parquet.")
@click.option("--min-packets", default=3, show_default=True, help="Shorter flows are dropped.")
@click.option("--min-flows", default=20, show_default=True, help="Classes with fewer flows (after caps) are dropped.")
@click.option("--cap-per-class", default=500, show_default=True, help="Most flows kept per class.")
@click.option("--cap-per-file", default=50, show_default=True, help="Most flows kept per class from one capture.")
@click.option("--test-size", default=0.2, show_default=True, help="Fraction of each class held out for test.")
@click.option("--seed", default=0, show_default=True)
def split(flows, out, min_packets, min_flows, cap_per_class, cap_per_file, test_size, seed) -> None:
    """Benchmark split of a labelled flows file: label = last dotted component, caps, stratified train/test."""
    from pathlib import Path

    from ..runtime.flows import write_flows
    from ..runtime.split import format_table, split_flows

    try:
        train_set, test_set, table = split_flows(_flows(flows), min_packets, min_flows, cap_per_class, cap_per_file,
                                                 test_size, seed)
    except ValueError as e:
        raise click.ClickException(f"{flows}: {e}") from None
    write_flows(Path(out) / "train.parquet", train_set)
    write_flows(Path(out) / "test.parquet", test_set)
    for line in format_table(table):
        click.echo(line)
    click.echo(f"{len(train_set)} train, {len(test_set)} test flows -> {out}")


@main.command()
@click.argument("flows", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_name", type=click.Choice(["llama"]), default="llama", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--epochs", default=80, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--dropout", default=0.3, show_default=True)
@click.option("--ema-horizon", default=0.1, show_default=True,
              help="Horizon of the weight average kept, as a share of all training steps (0 = raw weights).")
@click.option("--balance", default=0.5, show_default=True,
              help="Class balance of training draws: weight n**-balance for a class of n flows (0 = none, 1 = equal).")
@click.option("--dim", default=160, show_default=True, help="Hidden size.")
@click.option("--hidden", default=320, show_default=True, help="SwiGLU intermediate size.")
@click.option("--layers", default=4, show_default=True)
@click.option("--heads", default=8, show_default=True)
@click.option("--max-packets", default=64, show_default=True, help="Packets per flow the model sees.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def train(flows, model_name, out, epochs, batch_size, lr, dropout, ema_horizon, balance, dim, hidden, layers, heads,
          max_packets, seed, device) -> None:
    """Train a class-conditioned generator on a flows file (labels = classes)."""
    from ..train.train import TrainConfig, train as run_training

    data = [f for f in _flows(flows) if f.label and f.pl]
    if len({f.label for f in data}) < 2:
        raise click.ClickException(f"{flows}: need labelled flows of at least 2 classes (column 'label')")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, ema_horizon=ema_horizon, balance=balance,
                      seed=seed, device=device)
    mc = {"dropout": dropout, "dim": dim, "hidden": hidden, "n_layers": layers, "n_heads": heads}
    summary = run_training(data, out, mc, cfg, max_packets=max_packets, log=click.echo)
    sel = summary["selected"]
    click.echo(f"kept epoch {sel['epoch']} (val TSTR {sel['val_tstr']:.3f}, copy rate {sel['val_copy_rate']:.2f} "
               f"<= natural {summary['natural_copy_rate']:.2f}) -> {out}")


def _open_generator(path: str, device: str):
    """A step function and tokenizer from a bundle (manifest.json: ONNX Runtime / TensorRT, no torch) or a torch run
    directory (torch imported only here). For a bundle, `device` is the provider: auto, cpu, cuda or tensorrt."""
    from ..runtime.bundle import BundleError, is_bundle, load_bundle

    if is_bundle(path):
        try:
            return load_bundle(path, device)
        except (BundleError, ValueError, RuntimeError) as e:
            raise click.ClickException(str(e)) from None
    from ..train.checkpoint import load_run
    from ..train.generate import torch_step
    from ..train.train import resolve_device

    try:
        model, tok = load_run(path, resolve_device(device))
    except (FileNotFoundError, KeyError, TypeError) as e:
        raise click.ClickException(f"{path}: cannot load model: {e}") from None
    return torch_step(model), tok


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--n-per-class", type=int, help="Flows per class (default: --counts-from, else 100).")
@click.option("--counts-from", type=click.Path(exists=True, dir_okay=False),
              help="A flows file whose per-class counts to reproduce (e.g. the real training split).")
@click.option("--scale", default=1.0, show_default=True, help="Multiply the --counts-from counts.")
@click.option("--classes", help="Comma-separated subset of the model's classes.")
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--top-k", default=0, show_default=True)
@click.option("--top-p", default=1.0, show_default=True)
@click.option("--batch-size", default=1024, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Synthetic flows file (Parquet).")
def generate(run, n_per_class, counts_from, scale, classes, temperature, top_k, top_p, batch_size, seed, device,
             out) -> None:
    """Generate labelled synthetic flows from a trained run; the same seed gives the same flows."""
    from collections import Counter

    from tqdm import tqdm

    from ..runtime.flows import write_flows
    from ..runtime.sampler import Sampling, generate as sample_flows

    step, tok = _open_generator(run, device)
    wanted = classes.split(",") if classes else list(tok.classes)
    unknown = [c for c in wanted if c not in tok.classes]
    if unknown:
        raise click.ClickException(f"--classes: {', '.join(unknown)} not among the model's classes")
    if counts_from and n_per_class is None:
        have = Counter(f.label for f in _flows(counts_from))
        counts = {c: round(have[c] * scale) for c in wanted if have[c]}
    else:
        counts = {c: n_per_class or 100 for c in wanted}
    flows = []
    with tqdm(total=sum(counts.values()), desc="generate", unit="flow") as bar:
        for batch in sample_flows(step, tok, counts, Sampling(temperature, top_k, top_p), batch_size, seed):
            flows += batch
            bar.update(len(batch))
    write_flows(out, flows)
    click.echo(f"{len(flows)} flows of {len(counts)} classes -> {out}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True,
              help="tensorrt = the ONNX bundle plus a TensorRT engine (model.plan) built on this machine's GPU.")
@click.option("--int8", is_flag=True, help="int8 weights (ONNX dynamic quantization; with tensorrt: INT8 engine).")
@click.option("--opset", default=23, show_default=True, help="ONNX opset (23 emits fused Attention/RMSNormalization).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle directory to write.")
def export(run, fmt, int8, opset, out) -> None:
    """Export a trained run to a self-contained, hash-checked bundle that `generate` runs without torch."""
    from ..export.bundle import export_bundle

    trt = fmt == "tensorrt"
    if trt and int8:
        raise click.UsageError("--format tensorrt --int8 needs calibration flows, not wired here yet: "
                               "build fp16 (export.tensorrt.build_engine takes calibration batches)")
    try:
        export_bundle(run, out, int8=int8 and not trt, opset=opset, tensorrt=trt, trt_int8=int8 and trt,
                      log=click.echo)
    except (FileNotFoundError, FileExistsError, KeyError, TypeError) as e:
        raise click.ClickException(f"{run}: {e}") from None
    except RuntimeError as e:  # TensorRT missing or its build failed
        raise click.ClickException(str(e)) from None


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
@click.option("--real", required=True, type=click.Path(exists=True, dir_okay=False), help="Real test flows.")
@click.option("--synthetic", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Synthetic flows; repeat for several draws (generation seeds) to get mean ± sd.")
@click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False),
              help="Real training flows: adds leakage, copy rate and the real-vs-real floor (TRTR).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@click.option("--seed", default=0, show_default=True)
def evaluate(real, synthetic, train_path, json_out, seed) -> None:
    """Fidelity (JSDs, UniqAlign, leakage, copy rate) and TSTR of synthetic flows against real ones."""
    import json
    from pathlib import Path

    from ..runtime.flows import write_atomic
    from ..runtime.metrics import evaluate as run_eval

    rep = run_eval(_flows(real), [_flows(p) for p in synthetic], _flows(train_path) if train_path else None, seed)
    click.echo("JSD: 0 = same distribution (macro over classes); floor = real train vs real test; "
               "copy_rate under real_floor = the natural rate")
    click.echo(_report_table(rep))
    if json_out:
        write_atomic(json_out, lambda tmp: Path(tmp).write_text(json.dumps(rep, indent=2)))


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--scheme", required=True, type=click.Choice(["int8-wo", "int8-da"]),
              help="torchao int8 weight-only, or int8 dynamic activation + int8 weight.")
@click.option("--keep-embedding-fp32", is_flag=True, help="Leave the tied token embedding/head matrix fp32.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Quantized run directory to write.")
def quantize(run, scheme, keep_embedding_fp32, out) -> None:
    """Post-training int8 quantization (torchao) of a trained run into a run directory `generate` can use."""
    from ..train.quantize import quantize_run

    try:
        r = quantize_run(run, scheme, out, embedding=not keep_embedding_fp32)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{scheme}: {r['fp32_bytes'] / 1e6:.2f} MB fp32 -> {r['int8_bytes'] / 1e6:.2f} MB on disk; logits "
               f"max |err| {r['max_abs_logit_err']:.3f} (max |logit| {r['logit_scale']:.1f}), top-1 agreement "
               f"{r['top1_agree']:.3f}, KL {r['kl_nats']:.1e} nats -> {out}")


@main.group()
def bench() -> None:
    """Benchmarks: generation speed and quantization/export parity."""


def _write_json(path, rep) -> None:
    import json
    from pathlib import Path

    from ..runtime.flows import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(rep, indent=2, default=float)))


@bench.command("speed")
@click.argument("path", metavar="RUN_OR_BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--batch-sizes", default="1,64,1024", show_default=True)
@click.option("--flows-b1", default=200, show_default=True, help="Flows generated one at a time at batch 1.")
@click.option("--batches", "n_batches", default=3, show_default=True,
              help="Interleaved rounds; each times one batch of every variant at each batch size > 1.")
@click.option("--length", default=10, show_default=True, help="Packets per flow.")
@click.option("--no-peer", is_flag=True, help="Skip the Hugging Face LlamaForCausalLM comparison.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def bench_speed(path, batch_sizes, flows_b1, n_batches, length, no_peer, json_out) -> None:
    """ms per flow and flows/s of every variant (torch, torchao int8, ONNX fp32/int8) and of HF transformers."""
    import tempfile

    from ..export.bench import format_speed, run_speed

    with tempfile.TemporaryDirectory(prefix="ntg-bench-") as work:
        rep = run_speed(path, work, tuple(int(b) for b in batch_sizes.split(",")), flows_b1, n_batches, length,
                        peer=not no_peer, log=click.echo)
    click.echo(format_speed(rep))
    if json_out:
        _write_json(json_out, rep)


@bench.command("parity")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--real-train", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--real-test", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--n-per-class", default=100, show_default=True)
@click.option("--draws", default=5, show_default=True, help="fp32 generations that set its sampling interval.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def bench_parity(run, real_train, real_test, n_per_class, draws, seed, json_out) -> None:
    """Fidelity and TSTR of every variant against fp32; exits 1 when a variant disagrees with fp32."""
    import tempfile

    from ..export.parity import format_parity, run_parity

    with tempfile.TemporaryDirectory(prefix="ntg-parity-") as work:
        try:
            rep = run_parity(run, work, _flows(real_train), _flows(real_test), n_per_class, draws, seed,
                             log=click.echo)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    click.echo(format_parity(rep))
    if json_out:
        _write_json(json_out, rep)
    failed = [n for n, ok in rep["pass"].items() if not ok]
    if failed:
        click.echo(f"parity FAILED: {', '.join(failed)}", err=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
