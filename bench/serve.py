"""`ntg-edge bench serve`: the appliance under load, on loopback only, each part bounded in time.

- stream: sustained flows/s of one NDJSON client from the bundle, as a ratio to `bench speed`'s batch-1024 figure for
  the same bundle measured in the same run (fixed 10-packet flows, as bench speed generates them);
- retrain: the same stream's flows/s while an augment retrains the classifier, with the thread budget split (one
  generator thread, one retrain thread) and oversubscribed (two each);
- classify: 100 flows per request from `clients` concurrent clients for `seconds` s: p50/p99 latency, 5xx count;
- fuzz: schemathesis over the OpenAPI spec (every endpoint but the unbounded stream): 5xx count, 4xx without a message;
- augment (with --ndpi): on the nDPI benchmark split, keep a share of the real training flows per class, train a
  generator on them with a small fixed budget, serve it with a classifier trained on the same flows, call augment,
  and compare real-only and augmented macro-F1 on the real test split.

The service runs as a separate process (`python -m ntg_edge.appliance.serve`), so the client's work is not in its
timings; on a 2-core box client and server still share the cores.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import click
import numpy as np
import yaml

from ..runtime.bundle import read_bundle_config
from ..runtime.flows import Flow, read_flows, write_atomic, write_flows

LENGTH = 10  # bench speed's fixed flow length


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def service(work: Path, config: dict, name: str) -> Iterator[str]:
    """`ntg-edge serve` as a subprocess on a free loopback port with `config`; yields its base URL."""
    import httpx

    port = _free_port()
    cfg_path = work / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump({**config, "server": {"host": "127.0.0.1", "port": port}}))
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ntg_edge.appliance.serve", "--config", str(cfg_path),
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/v1/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {(work / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def batch_speed(bundle: Path, n_batches: int = 3, log: Callable = print) -> float:
    """`bench speed`'s batch-1024 flows/s of the bundle (its own code, ONNX Runtime on every core)."""
    from .speed import run_speed

    with tempfile.TemporaryDirectory(prefix="ntg-bench-serve-") as work:
        rep = run_speed(bundle, work, batches=(1024,), flows_b1=1, n_batches=n_batches, length=LENGTH, peer=False,
                        log=log)
    rows = [r for r in rep["rows"] if r["batch"] == 1024]
    return float(rows[0]["flows_s"])


def stream_rate(url: str, seconds: float, during: Callable[[], None] | None = None) -> dict:
    """flows/s read by one client over `seconds` after its first line; `during()` is called once streaming."""
    import httpx

    params = {"batch": 1024, "length": LENGTH}
    n, t0 = 0, None
    with httpx.stream("GET", f"{url}/v1/stream", params=params, timeout=60) as r:
        for chunk in r.iter_bytes():
            if t0 is None:
                t0 = time.perf_counter()
                if during is not None:
                    during()
                continue
            n += chunk.count(b"\n")  # counting lines, not parsing them: the client stays cheap
            if time.perf_counter() - t0 >= seconds:
                break
    elapsed = time.perf_counter() - t0
    return {"flows": n, "seconds": elapsed, "flows_per_s": n / elapsed}


def stream_vs_speed(work: Path, bundle: Path, seconds: float, rounds: int, log: Callable) -> dict:
    """One client's stream from a service with 1 and with 2 generator threads, against bench speed's batch-1024
    figure, in interleaved rounds: this shared machine's speed drifts, so each round measures all three side by side
    and the ratio is of the medians."""
    out: dict = {"rounds": rounds, "seconds_per_stream": seconds, "bench_speed_b1024": [], "threads_1": [],
                 "threads_2": []}
    with service(work, {"bundle": str(bundle), "generator": {"threads": 1},
                        "classifier": {"path": str(work / "clf-stream")}}, "stream-1") as url1, \
            service(work, {"bundle": str(bundle), "generator": {"threads": 2},
                           "classifier": {"path": str(work / "clf-stream")}}, "stream-2") as url2:
        for r in range(rounds):
            out["bench_speed_b1024"].append(batch_speed(bundle, n_batches=1, log=lambda *_: None))
            for key, url in (("threads_1", url1), ("threads_2", url2)):
                time.sleep(1.5)  # the batch generated ahead for the last stream finishes before the next timing
                out[key].append(stream_rate(url, seconds)["flows_per_s"])
            log(f"stream round {r}: bench speed b1024 {out['bench_speed_b1024'][-1]:.0f} flows/s, stream "
                f"{out['threads_1'][-1]:.0f} (1 generator thread) / {out['threads_2'][-1]:.0f} (2) flows/s")
    speed = float(np.median(out["bench_speed_b1024"]))
    for key in ("threads_1", "threads_2"):
        out[f"ratio_{key}"] = float(np.median(out[key])) / speed
    log(f"stream / bench speed b1024 (medians): {out['ratio_threads_1']:.2f} with 1 generator thread, "
        f"{out['ratio_threads_2']:.2f} with 2")
    return out


def _wait_augment(url: str, limit: float = 600) -> dict:
    import httpx

    deadline = time.monotonic() + limit
    while (st := httpx.get(f"{url}/v1/augment", timeout=10).json())["state"] == "running":
        if time.monotonic() > deadline:
            raise RuntimeError("augment did not finish in time")
        time.sleep(0.5)
    return st


def retrain_stall(work: Path, bundle: Path, flows: list[Flow], seconds: float, log: Callable) -> dict:
    """Stream flows/s alone and during a retrain, for a split and an oversubscribed thread budget."""
    import httpx

    from ..appliance.server import flow_dict

    body = {"flows": [flow_dict(f) for f in flows], "target_per_class": 1000}
    out = {}
    for name, gen, aug in (("split_1+1", 1, 1), ("oversubscribed_2+2", 2, 2)):
        cfg = {"bundle": str(bundle), "generator": {"threads": gen},
               "classifier": {"path": str(work / f"clf-{name}"), "trees": 200},
               "augment": {"threads": aug}}
        with service(work, cfg, f"retrain-{name}") as url:
            alone = stream_rate(url, seconds)
            started = {}

            def kick() -> None:
                started["t"] = time.perf_counter()
                r = httpx.post(f"{url}/v1/augment", json=body, timeout=60)
                assert r.status_code == 202, r.text

            during = stream_rate(url, seconds, during=kick)
            st = _wait_augment(url)
            retrain_s = st["finished"] - st["started"]
        out[name] = {"generator_threads": gen, "augment_threads": aug, "alone": alone["flows_per_s"],
                     "during_retrain": during["flows_per_s"], "ratio": during["flows_per_s"] / alone["flows_per_s"],
                     "retrain_seconds": retrain_s}
        log(f"retrain {name}: stream {alone['flows_per_s']:.0f} flows/s alone, {during['flows_per_s']:.0f} during "
            f"a retrain ({retrain_s:.1f} s)")
    return out


async def _classify_load(url: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    codes: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def one(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await client.post("/v1/classify", content=bodies[i % len(bodies)],
                                      headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                i += clients

        await asyncio.gather(*(one(k) for k in range(clients)))
    lat = np.array(latencies) * 1e3
    return {"requests": len(lat), "seconds": seconds, "clients": clients, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "requests_per_s": len(lat) / seconds,
            "status": codes, "errors_5xx": sum(n for c, n in codes.items() if c >= 500)}


def classify_latency(work: Path, bundle: Path, train: Path, test: list[Flow], clients: int, seconds: float,
                     log: Callable) -> dict:
    from ..appliance.server import flow_dict

    bodies = [json.dumps({"flows": [flow_dict(f) for f in (test * 2)[i: i + 100]]}).encode()
              for i in range(0, len(test), 100)]
    cfg = {"bundle": str(bundle), "classifier": {"path": str(work / "clf-classify"), "train_flows": str(train)}}
    with service(work, cfg, "classify") as url:
        rep = asyncio.run(_classify_load(url, bodies, clients, seconds))
    log(f"classify: {rep['requests']} requests of 100 flows from {clients} clients in {seconds:.0f} s: "
        f"p50 {rep['p50_ms']:.1f} ms, p99 {rep['p99_ms']:.1f} ms, 5xx {rep['errors_5xx']}")
    return rep


# schemathesis has no NDJSON encoder: a generated body (one flow object, or a list) is sent as one line per object.
# The check: every 4xx carries a one-line message (the project's rule for bad input).
_HOOKS = """import json
import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    items = value if isinstance(value, list) else [value]
    return {"data": "\\n".join(json.dumps(v) for v in items).encode()}


@schemathesis.check
def client_error_has_message(ctx, response, case):
    if 400 <= response.status_code < 500:
        detail = response.json().get("detail")
        if not isinstance(detail, str) or not detail or "\\n" in detail:
            raise AssertionError(f"{response.status_code} without a one-line detail: {response.text[:200]}")
"""


def fuzz(work: Path, bundle: Path, train: Path, examples: int, log: Callable) -> dict:
    """schemathesis over the OpenAPI spec; the unbounded stream is left out (a fuzzer reads a response whole)."""
    cfg = {"bundle": str(bundle), "generator": {"max_flows": 2000},
           "classifier": {"path": str(work / "clf-fuzz"), "train_flows": str(train), "trees": 50},
           "augment": {"data_dir": str(train.parent), "target_per_class": 50}}
    with service(work, cfg, "fuzz") as url:
        cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json",
               "--checks", "not_a_server_error,client_error_has_message", "--exclude-path", "/v1/stream", "--max-examples", str(examples),
               "--request-timeout", "60", "--continue-on-failure"]
        t0 = time.perf_counter()
        (work / "ntg_fuzz_hooks.py").write_text(_HOOKS)
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "ntg_fuzz_hooks",
               "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
        seconds = time.perf_counter() - t0
        import httpx

        metrics = httpx.get(f"{url}/v1/metrics").text
    (work / "fuzz.out").write_text(done.stdout + done.stderr)
    internal = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith('ntg_errors_total{kind="internal"}'))
    summary = [line for line in done.stdout.splitlines() if "passed" in line or "failed" in line or "error" in line]
    rep = {"exit_code": done.returncode, "seconds": seconds, "examples_per_operation": examples,
           "server_internal_errors": internal, "summary": summary[-5:]}
    log(f"fuzz: schemathesis exit {done.returncode}, server internal errors {internal:.0f} ({seconds:.0f} s)")
    return rep


# ------------------------------------------------------------------------------------------------ augmentation study
def keep_share(flows: list[Flow], share: float, seed: int = 0) -> list[Flow]:
    """`share` of each class's flows (at least 2, so one can be held out), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[Flow]] = {}
    for f in flows:
        by.setdefault(f.label, []).append(f)
    kept: list[Flow] = []
    for c in sorted(by):
        fs = by[c]
        k = min(len(fs), max(2, math.ceil(share * len(fs))))
        kept += [fs[i] for i in sorted(rng.choice(len(fs), k, replace=False))]
    return kept


def augment_study(work: Path, train: list[Flow], test: list[Flow], shares: tuple[float, ...], steps: int,
                  target: int, log: Callable, generator: Path | None = None) -> dict:
    """Per share: real-only vs augmented macro-F1 on the real test split, through the service's own endpoints.

    `generator` None: for each share a generator is trained on the kept flows alone (the strict low-data setting),
    each with the same budget in optimizer steps (batches of 16), not in epochs: 30 epochs of 116 flows at the
    default batch of 64 are 60 steps, from which the model learns little more than the packet marginals.
    `generator` a run: one bundle made from it serves every share (a generator trained once on a larger corpus,
    shipped to boxes that each hold a few labelled flows of their own)."""
    from fastapi.testclient import TestClient

    from ..appliance.classifier import macro_f1
    from ..appliance.config import load_config
    from ..appliance.server import Appliance, create_app, flow_dict
    from ..export.bundle import export_bundle
    from ..train.train import TrainConfig, train as train_generator

    model = {"dim": 64, "ffn_dim": 128, "n_layers": 2, "n_heads": 4, "dropout": 0.2}
    out = {}
    shared = None
    if generator is not None:
        shared = export_bundle(generator, work / "bundle-generator", int8=True, log=lambda *_: None)
        out["generator"] = {"run": str(generator), "tstr_f1": _tstr(shared, test)}
    for share in shares:
        tag = f"{round(share * 100)}pct"
        kept = keep_share(train, share)
        write_flows(work / f"{tag}.parquet", kept)
        row: dict = {"share": share, "real_train_flows": len(kept)}
        if shared is None:
            t0 = time.perf_counter()
            epochs = math.ceil(steps * 16 / len(kept))
            train_generator(kept, work / f"run-{tag}", model,
                            TrainConfig(epochs=epochs, batch_size=16, patience=epochs, val_flows_per_class=5),
                            log=lambda *_: None)
            row.update(generator_steps=steps, generator_epochs=epochs, train_seconds=time.perf_counter() - t0)
            bundle = export_bundle(work / f"run-{tag}", work / f"bundle-{tag}", int8=True, log=lambda *_: None)
            row["tstr_f1"] = _tstr(bundle, test)
        else:
            bundle = shared
        cfg = load_config(None, {"bundle": str(bundle), "classifier": {"path": str(work / f"clf-{tag}"),
                                                                       "train_flows": str(work / f"{tag}.parquet")},
                                 "augment": {"target_per_class": target}})
        app = Appliance(cfg, log=lambda *_: None)
        with TestClient(create_app(app)) as c:
            real_only = app.classifier
            r = c.post("/v1/augment", json={"flows": [flow_dict(f) for f in kept]})
            assert r.status_code == 202, r.text
            while (st := c.get("/v1/augment").json())["state"] == "running":
                time.sleep(0.5)
            preds = c.post("/v1/classify", json={"flows": [flow_dict(f) for f in test]}).json()["predictions"]
        from sklearn.metrics import f1_score

        y = [f.label for f in test]
        served = float(f1_score(y, [p["label"] for p in preds], labels=sorted(set(y)), average="macro",
                                zero_division=0))
        row.update({"synthetic_flows": sum(st["synthetic"].values()), "holdout_real_only_f1": st["before_f1"],
                    "holdout_augmented_f1": st["after_f1"], "swapped": st["swapped"],
                    "test_f1_real_only": macro_f1(real_only, test), "test_f1_served_after_augment": served,
                    # the augmented forest on the test split, whether or not the held-out rule swapped it in
                    "test_f1_augmented": macro_f1(app.augmenter.candidate, test)})
        out[tag] = row
        log(f"augment {tag}: {len(kept)} real flows, +{row['synthetic_flows']} synthetic; test macro-F1 real-only "
            f"{row['test_f1_real_only']:.3f}, augmented {row['test_f1_augmented']:.3f}, served {served:.3f} "
            f"(swapped {st['swapped']}; held-out real only {st['before_f1']} -> augmented {st['after_f1']})")
    return out


def _tstr(bundle: Path, test: list[Flow], per_class: int = 100) -> float:
    """Macro-F1 on the real test split of a forest trained on the bundle's synthetic flows only: what the generator
    has learnt of each class."""
    from ..appliance.synth import generate_flows
    from ..runtime.bundle import load_bundle
    from ..runtime.metrics import train_test_f1
    from ..runtime.sampler import Sampling

    engine, tok = load_bundle(bundle, "cpu")
    return train_test_f1(generate_flows(engine, tok, {c: per_class for c in tok.classes}, Sampling(), 1024, 1), test)


# ------------------------------------------------------------------------------------------------ the command
def run_serve_bench(bundle: Path, train: Path, test: Path, work: Path, stream_seconds: float = 10, rounds: int = 3,
                    classify_seconds: float = 60, clients: int = 16, fuzz_examples: int = 25,
                    ndpi: Path | None = None, shares: tuple[float, ...] = (0.05, 0.1, 0.2), steps: int = 600,
                    target: int = 200, parts: tuple[str, ...] = ("stream", "retrain", "classify", "fuzz", "augment"),
                    generator: Path | None = None, log: Callable = print) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    rep: dict = {"bundle": str(bundle), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    test_flows = read_flows(test)
    if "stream" in parts:
        rep["stream"] = stream_vs_speed(work, bundle, stream_seconds, rounds, log)
    if "retrain" in parts:
        rep["retrain"] = retrain_stall(work, bundle, read_flows(train), stream_seconds, log)
    if "classify" in parts:
        rep["classify"] = classify_latency(work, bundle, train, test_flows, clients, classify_seconds, log)
    if "fuzz" in parts:
        rep["fuzz"] = fuzz(work, bundle, train, fuzz_examples, log)
    if "augment" in parts and ndpi is not None:
        from ..runtime.ingest import ingest_paths
        from ..runtime.split import SplitConfig, split_flows

        flows, _ = ingest_paths([ndpi / "pcaps"], labels=ndpi / "labels.csv.gz", progress=False, warn=lambda m: None)
        ndpi_train, ndpi_test, _ = split_flows(flows, SplitConfig())
        rep["augment"] = augment_study(work, ndpi_train, ndpi_test, shares, steps, target, log, generator)
    return rep


PARTS = ("stream", "retrain", "classify", "fuzz", "augment")


def _shares(ctx, param, value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
    if not all(0 < v <= 1 for v in out):
        raise click.BadParameter(f"shares must be in (0, 1], got {value!r}")
    return out


def _parts(ctx, param, value: str) -> tuple[str, ...]:
    out = tuple(v.strip() for v in value.split(","))
    unknown = [v for v in out if v not in PARTS]
    if unknown:
        raise click.BadParameter(f"unknown part(s) {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    return out


@click.command("serve")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--real-train", "train", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled real flows: the classifier's training flows and the retrain's upload.")
@click.option("--real-test", "test", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Real flows sent to classify.")
@click.option("--work", type=click.Path(file_okay=False), default="out/bench-serve", show_default=True)
@click.option("--stream-seconds", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Per stream timing.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Interleaved rounds of stream vs bench speed.")
@click.option("--classify-seconds", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--clients", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--fuzz-examples", default=25, show_default=True, type=click.IntRange(min=1),
              help="schemathesis examples per operation.")
@click.option("--ndpi", type=click.Path(exists=True, file_okay=False),
              help="nDPI corpus: run the augmentation study on its benchmark split.")
@click.option("--shares", default="0.05,0.1,0.2", show_default=True, callback=_shares,
              help="Shares of real training flows kept.")
@click.option("--steps", default=600, show_default=True, type=click.IntRange(min=1),
              help="Generator optimizer steps per share (batches of 16).")
@click.option("--target", default=200, show_default=True, type=click.IntRange(min=1),
              help="augment's target flows per class.")
@click.option("--generator", type=click.Path(exists=True, file_okay=False),
              help="Augmentation study: one training run (e.g. trained on the whole nDPI training split) serves every "
                   "share, instead of a generator trained on each share's kept flows.")
@click.option("--parts", default="stream,retrain,classify,fuzz,augment", show_default=True, callback=_parts)
@click.option("--json", "json_out", type=click.Path(dir_okay=False))
def serve_bench(bundle, train, test, work, stream_seconds, rounds, classify_seconds, clients, fuzz_examples, ndpi, shares,
                steps, target, generator, parts, json_out) -> None:
    """The appliance under load on loopback: stream vs bench speed, stream during a retrain, classify latency,
    API fuzzing, and (with --ndpi) on-the-fly augmentation at 5-20% real data."""
    if generator and not (ndpi and "augment" in parts):
        raise click.UsageError("--generator is the augmentation study's generator: give --ndpi and the augment part")
    read_bundle_config(bundle)  # a damaged or foreign folder is one line here, not a server that never starts
    rep = run_serve_bench(Path(bundle), Path(train), Path(test), Path(work), stream_seconds, rounds, classify_seconds,
                          clients, fuzz_examples, Path(ndpi) if ndpi else None,
                          shares, steps, target, parts, Path(generator) if generator else None, log=click.echo)
    text = json.dumps(rep, indent=2, default=float)
    if json_out:
        write_atomic(json_out, lambda tmp: Path(tmp).write_text(text + "\n"))
    click.echo(text)


if __name__ == "__main__":
    serve_bench()
