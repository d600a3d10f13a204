"""`ntg-edge bench steps`: what one decode step costs at each position of a flow, per model.

A LLaMA step attends over every earlier position (its key/value cache grows by one position a step); a Mamba step
updates a fixed-size state (a convolution window and an SSM state per layer), so its cost should not depend on the
position. Each model's ONNX int8 bundle (the shipped variant; built from a run into a work directory, or given) steps
one flow per row from its class token, and at each listed position the step is timed `reps` times from the same
state (the in-graph sampler included, as in generation). The models take turns step by step, so a drift of the
machine's speed hits all of them alike; it still moves the positions' columns against each other, so compare a model's
row across positions against the other model's, and batch 1, where a step is mostly per-node overhead, with care.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from ..runtime.bundle import read_bundle_config
from ..runtime.engine import Engine
from ..runtime.tokenizer import Tokenizer
from ..appliance.options import positive_ints
from .variants import build_variants, is_run

POSITIONS = (1, 16, 32, 64)
BATCHES = (1, 256)


def _open(path: Path, workdir: Path, log) -> tuple[str, Engine, Tokenizer]:
    """(label, engine, tokenizer) of a run's ONNX int8 bundle (built into `workdir`) or of a bundle."""
    if is_run(path):
        from ..train.checkpoint import read_config

        (variant,) = build_variants(path, workdir, ("onnx int8",), log=log) or [None]
        if variant is None:
            raise ValueError(f"{path}: the ONNX int8 bundle could not be built (see above)")
        model_type, name = read_config(path).get("model_type", "llama"), variant.name
        engine, tok = variant.open()
    else:
        from ..runtime.bundle import load_bundle

        cfg = read_bundle_config(path)
        model_type, name = cfg.get("model_type", "llama"), f"onnx {cfg.get('precision', 'fp32')}"
        engine, tok = load_bundle(path, "cpu")
    return f"{model_type} {name} ({Path(path).name})", engine, tok


def _step(engine: Engine, tokens: np.ndarray, iats: np.ndarray, state, u: np.ndarray, ban: np.ndarray):
    if engine.samples:
        return engine.sample_step(tokens, iats, state, u, 1.0, ban)
    logits, iat_logits, state = engine.step(tokens, iats, state)
    return logits.argmax(-1), iat_logits.argmax(-1), state


def run_steps(paths: list[str | Path], workdir: str | Path, batches=BATCHES, positions=POSITIONS, reps: int = 30,
              log=print) -> dict:
    """{"rows": [{model, batch, position, ms}]}: the median ms of one step at each position (1 = the class token)."""
    models = [_open(Path(p), Path(workdir) / str(i), log) for i, p in enumerate(paths)]
    horizon = min(tok.block_size for _, _, tok in models) - 1  # the longest state every model takes
    positions = sorted(p for p in set(positions) if 1 <= p <= horizon)
    if not positions:
        raise ValueError(f"positions: none within 1 .. {horizon} (the shortest model horizon)")
    rows = []
    for b in batches:
        live = []
        for label, engine, tok in models:
            ban = np.zeros(tok.vocab_size, np.float32)
            ban[: tok.packet_base] = ban[tok.packet_end :] = -np.inf  # packets only: every row runs to the end
            tokens = np.array([[tok.class_token(tok.classes[r % tok.n_classes])] for r in range(b)], np.int64)
            live.append([label, engine, ban, tokens, np.zeros((b, 1), np.int64), None])
        u = np.random.default_rng(0).random((b, 2), dtype=np.float32)
        for pos in range(1, positions[-1] + 1):
            if pos in positions:
                times = [[] for _ in live]
                for rep in range(reps + 1):  # the models in turn, step by step; the first round warms up
                    for m, ts in zip(live, times):
                        label, engine, ban, tokens, iats, state = m
                        t = time.perf_counter()
                        _step(engine, tokens, iats, state, u, ban)
                        if rep:
                            ts.append(time.perf_counter() - t)
                rows += [{"model": m[0], "batch": b, "position": pos, "ms": 1e3 * float(np.median(ts))}
                         for m, ts in zip(live, times)]
            for m in live:  # one step on: the next position's state
                nxt, nbin, m[5] = _step(m[1], m[3], m[4], m[5], u, m[2])
                m[3], m[4] = nxt[:, None], nbin[:, None]
    return {"rows": rows, "positions": positions, "reps": reps}


def format_steps(rep: dict) -> str:
    pos = rep["positions"]
    w = max(len(r["model"]) for r in rep["rows"]) + 2
    head = f"{'model':<{w}}{'batch':>6}" + "".join(f"{f'pos {p}':>10}" for p in pos) + f"{'last/first':>12}"
    lines = [f"ms per decode step (median of {rep['reps']}, in-graph sampling included) after position-1 tokens",
             head, "-" * len(head)]
    keys = dict.fromkeys((r["model"], r["batch"]) for r in rep["rows"])
    for model, b in keys:
        ms = {r["position"]: r["ms"] for r in rep["rows"] if (r["model"], r["batch"]) == (model, b)}
        lines.append(f"{model:<{w}}{b:>6}" + "".join(f"{ms[p]:>10.3f}" for p in pos)
                     + f"{ms[pos[-1]] / ms[pos[0]]:>11.2f}x")
    return "\n".join(lines)


@click.command("steps")
@click.argument("paths", nargs=-1, required=True, metavar="RUN_OR_BUNDLE...",
                type=click.Path(exists=True, file_okay=False))
@click.option("--batch-sizes", default=",".join(map(str, BATCHES)), show_default=True, callback=positive_ints)
@click.option("--positions", default=",".join(map(str, POSITIONS)), show_default=True, callback=positive_ints,
              help="Positions (1 = the class token) at which a step is timed.")
@click.option("--reps", default=30, show_default=True, type=click.IntRange(min=1), help="Timed steps per position.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
def steps_command(paths, batch_sizes, positions, reps, json_out) -> None:
    """ms per decode step at positions of a flow, per model (ONNX int8): LLaMA's grows with its cache, Mamba's not."""
    import json
    import tempfile

    from ..runtime.flows import write_atomic

    with tempfile.TemporaryDirectory(prefix="ntg-steps-") as work:
        rep = run_steps(list(paths), work, batch_sizes, positions, reps, log=click.echo)
    click.echo(format_steps(rep))
    if json_out:
        write_atomic(json_out, lambda tmp: Path(tmp).write_text(json.dumps(rep, indent=2)))
