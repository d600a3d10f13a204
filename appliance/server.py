"""The appliance's HTTP API (FastAPI): `Appliance` holds what the service runs on, `create_app` serves it.

Torch-free: this module and everything it imports use `runtime` only. Every endpoint lives under /v1 and is in the
generated OpenAPI spec (/openapi.json); requests and responses are the pydantic models below, and their flow schema
is the project's one flow format (runtime/flows.py `Flow`). Bad input gets a 4xx whose `detail` is one line naming
the field. docs/appliance.md describes the endpoints.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import secrets
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, Literal

import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..runtime.bundle import load_bundle, read_bundle_config
from ..runtime.flows import Flow, read_flows, validate
from ..runtime.sampler import check_guidance
from .augment import Augmenter, Busy
from .classifier import Classifier, OnnxClassifier, predict, train_classifier
from .config import ApplianceConfig
from .live import LiveCapture
from .synth import apportion, generate_flows, stream_batch
from .telemetry import Telemetry

STATIC = Path(__file__).parent / "static"
NDJSON = "application/x-ndjson"
PARQUET = "application/vnd.apache.parquet"
MAX_PACKETS = 10_000  # per flow in a request: bounds memory; real flows files keep 64
_FLOW_FIELDS = [f.name for f in fields(Flow)]


# ------------------------------------------------------------------------------------------------ the flow format
class FlowModel(BaseModel):
    """One biflow in the project's flow format: its first packets as aligned (pl, dir, iat) lists."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field("", max_length=200, description="Class (required in augment uploads).")
    file: str = Field("", max_length=1000, description="Where the flow came from (capture file, interface).")
    src_ip: str = Field("", max_length=64)
    src_port: int = Field(0, ge=0, le=65535)
    dst_ip: str = Field("", max_length=64)
    dst_port: int = Field(0, ge=0, le=65535)
    protocol: int = Field(0, ge=0, le=255, description="IP protocol number: 6 TCP, 17 UDP.")
    first_ts: float = Field(0.0, allow_inf_nan=False, description="Epoch seconds of the first packet.")
    packets: int = Field(0, ge=0, description="All packets of the flow, not only the kept ones.")
    bytes: int = Field(0, ge=0, description="All transport payload bytes of the flow.")
    pl: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(
        max_length=MAX_PACKETS, description="Transport payload length per kept packet.")
    dir: list[Literal[1, -1]] = Field(max_length=MAX_PACKETS, description="+1 from src, -1 from dst, per packet.")
    iat: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        max_length=MAX_PACKETS, description="Seconds since the flow's previous packet; the first is 0.")

    @model_validator(mode="after")
    def _aligned(self) -> "FlowModel":
        if not len(self.pl) == len(self.dir) == len(self.iat):
            raise ValueError(f"pl, dir and iat must have equal lengths, got {len(self.pl)}, {len(self.dir)}, "
                             f"{len(self.iat)}")
        return self

    def to_flow(self) -> Flow:
        return Flow(**self.__dict__)  # the same field names, validated


def flow_dict(f: Flow) -> dict:
    return {name: getattr(f, name) for name in _FLOW_FIELDS}


_FLOW_LINE = TypeAdapter(FlowModel)


def _component_schema(model: type[BaseModel]) -> dict:
    """A model's JSON schema for an endpoint that reads its body by hand (augment takes JSON or NDJSON), with its
    nested models referring to the spec's shared components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


class Problem(BaseModel):
    detail: str = Field(description="What was wrong, in one line naming the field.")


# ------------------------------------------------------------------------------------------------ API models
class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    bundle_verified: bool
    classifier_loaded: bool
    reasons: list[str] = Field(description="Why the service is not ready (empty when it is).")


class BundleInfo(BaseModel):
    path: str
    classes: list[str]
    config: dict[str, Any] = Field(description="The bundle's config.yaml: tokenizer, model, source run, precision.")


class ClassifierInfo(BaseModel):
    loaded: bool
    kind: str | None = None
    version: int = 0
    classes: list[str] = []
    macro_f1: float | None = Field(None, description="On held-out real flows when it was trained.")
    trained_on: dict[str, int] = {}
    features: str | None = None


Mix = dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=1, description="Flows to generate (at most generator.max_flows).")
    mix: Mix | None = Field(None, description="Class weights; the flows are split in proportion (all classes "
                                              "equally when absent).")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    length: int | None = Field(None, ge=1, le=4096, description="Force exactly this many packets per flow.")
    format: Literal["json", "parquet"] = Field("json", description="parquet: a flows file as a download.")


class GenerateResponse(BaseModel):
    counts: dict[str, int]
    seed: int
    flows: list[FlowModel]


class StreamFlow(BaseModel):
    seq: int = Field(description="The flow's number in its stream; resume with start=seq+1.")
    flow: FlowModel


class StreamEnd(BaseModel):
    end: Literal["count", "shutdown"] = Field(description="count: the requested flows were sent; shutdown: the "
                                                          "service is stopping (resume elsewhere from next_seq).")
    next_seq: int


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flows: list[FlowModel] = Field(min_length=1)


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    classifier_version: int
    predictions: list[Prediction]


class AugmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flows: list[FlowModel] | None = Field(None, description="Real labelled flows (every label a class of the "
                                                            "bundle); or name a file with `path`.")
    path: str | None = Field(None, max_length=4096, description="A flows file (Parquet) inside augment.data_dir.")
    target_per_class: int | None = Field(None, ge=1, le=100_000, description="Flows per class after rebalancing "
                                                                             "(default: augment.target_per_class).")

    @model_validator(mode="after")
    def _one_source(self) -> "AugmentRequest":
        if (self.flows is None) == (self.path is None):
            raise ValueError("give either flows or path")
        return self


class AugmentStatusModel(BaseModel):
    state: Literal["idle", "running", "done", "failed"]
    started: float | None
    finished: float | None
    real_flows: int
    held_out: int
    target_per_class: int
    synthetic: dict[str, int]
    before_f1: float | None
    after_f1: float | None
    swapped: bool
    version: int
    error: str | None


class LivePredictionModel(BaseModel):
    time: float
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    packets: int
    ended: bool
    label: str
    probability: float


class LiveStatus(BaseModel):
    enabled: bool
    interface: str | None = None
    bpf: str | None = None
    running: bool = False
    error: str | None = None
    classify_at: int | None = None
    flows_seen: int = 0
    unclassified: int = 0
    counts: dict[str, int] = {}
    recent: list[LivePredictionModel] = []


class Stats(BaseModel):
    uptime_s: float
    generated: dict[str, float]
    classified: dict[str, float]
    generate_per_s: float = Field(description="Flows generated per second over the last 10 s.")
    classify_per_s: float = Field(description="Flows classified per second over the last 10 s.")
    stream_clients: int


# ------------------------------------------------------------------------------------------------ the appliance
class Appliance:
    """What the service runs on: the verified bundle and its engine, the classifier, augment, capture, metrics.

    `open` raises BundleError / ClassifierError / ValueError / CaptureError with one line naming the file or setting,
    before anything listens."""

    def __init__(self, cfg: ApplianceConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        self.telemetry = Telemetry()
        self.started = time.time()
        self.draining = threading.Event()  # set on SIGTERM: streams end cleanly
        if cfg.bundle is None:
            raise ValueError("bundle: no bundle given (--bundle or bundle: in the config)")
        self.bundle_config = read_bundle_config(cfg.bundle)
        self.engine, self.tok = load_bundle(cfg.bundle, "cpu", threads=cfg.generator.threads)
        check_guidance(self.tok, cfg.generator.sampling)
        self.classes = list(self.tok.classes)
        self.classifier_dir = cfg.classifier.path or Path(os.environ.get("STATE_DIRECTORY", ".")) / "classifier"
        self.classifier: Classifier | None = self._open_classifier()
        self._publish_classifier()
        self.augmenter = Augmenter(cfg.model_copy(update={"classifier": cfg.classifier.model_copy(
            update={"path": self.classifier_dir})}), self, self.classes, log)
        self.live = (LiveCapture(cfg.capture, lambda: self.classifier, self.telemetry, log)
                     if cfg.capture.interface else None)

    def _open_classifier(self) -> Classifier | None:
        c = self.cfg.classifier
        if (self.classifier_dir / "classifier.json").exists() or c.kind == "onnx":
            return OnnxClassifier(self.classifier_dir, c.threads)
        if c.train_flows is None:
            self.log("no classifier yet: classify and live capture wait for one (augment trains it)")
            return None
        flows = [f for f in read_flows(c.train_flows) if f.label and f.pl]
        if len({f.label for f in flows}) < 2:
            raise ValueError(f"{c.train_flows}: need labelled flows of at least 2 classes to train the classifier")
        self.log(f"training the classifier on {len(flows)} flows of {c.train_flows}")
        return train_classifier(self.classifier_dir, flows, c.trees, self.cfg.augment.threads, c.holdout)

    def _publish_classifier(self) -> None:
        clf = self.classifier
        self.telemetry.classifier_version.set(clf.version if clf else 0)
        f1 = clf.macro_f1 if clf else None
        self.telemetry.classifier_f1.set(math.nan if f1 is None else f1)

    def swap_classifier(self, new: Classifier) -> None:
        # One reference assignment: a classify call uses the classifier it read first, old or new, never a mix.
        self.classifier = new
        self._publish_classifier()


# ------------------------------------------------------------------------------------------------ errors
def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",) or len(loc) == 1]
    return ".".join(parts) or "body"


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


_ERRORS = {400: "bad_request", 401: "auth", 403: "forbidden", 404: "not_found", 405: "method", 409: "conflict",
           413: "too_large", 415: "media_type", 422: "validation"}
_PROBLEMS = {code: {"model": Problem} for code in (400, 401, 404, 409, 413, 422)}


def _install_error_handlers(app: FastAPI, telemetry: Telemetry) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        telemetry.errors.labels(kind="validation").inc()
        errs = exc.errors()
        first = errs[0]
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        msg = str(first.get("msg", "invalid")).replace("\n", " ")
        return _problem(422, f"{_where(tuple(first.get('loc', ())))}: {msg}{more}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        telemetry.errors.labels(kind=_ERRORS.get(exc.status_code, str(exc.status_code))).inc()
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        telemetry.errors.labels(kind="internal").inc()
        return _problem(500, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _parse_json(model: type[BaseModel], raw: bytes) -> Any:
    """A JSON body read straight into `model`; 422 with one line naming the first bad field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise _bad(".".join(str(p) for p in err["loc"]) or "body", f"{err['msg']}{more}") from None


def _bad(field: str, msg: str, status: int = 422) -> HTTPException:
    return HTTPException(status, f"{field}: {msg}")


def _parse_mix(text: str, classes: list[str], field: str = "mix") -> dict[str, float]:
    """'dns:2,http:1' or 'dns,http' (equal weights); empty = every class equally."""
    if not text.strip():
        return {c: 1.0 for c in classes}
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise _bad(field, f"weight {weight!r} of {name!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise _bad(field, f"weight of {name!r} must be a finite number >= 0")
        mix[name] = mix.get(name, 0.0) + w
    return _check_mix(mix, classes, field)


def _check_mix(mix: dict[str, float], classes: list[str], field: str) -> dict[str, float]:
    unknown = [c for c in mix if c not in classes]
    if unknown:
        raise _bad(field, f"unknown class {unknown[0]!r} (classes: {', '.join(classes)})")
    mix = {c: w for c, w in mix.items() if w > 0}
    if not mix:
        raise _bad(field, "every weight is 0")
    return mix


# ------------------------------------------------------------------------------------------------ the app
class LatencyMiddleware:
    """Request latency by route template into the histogram. Plain ASGI rather than FastAPI's http middleware, which
    wraps every response in an extra stream and task (about a millisecond per classify call); streams observe their
    own latency when they end."""

    def __init__(self, app, telemetry: Telemetry) -> None:
        self.app, self._tel = app, telemetry

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        streaming = False

        async def watch(message) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                streaming = dict(message.get("headers", ())).get(b"content-type", b"").startswith(NDJSON.encode())
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            if not streaming:
                self._tel.latency.labels(scope["method"], getattr(route, "path", "unmatched")).observe(
                    time.perf_counter() - t0)


_bearer = HTTPBearer(auto_error=False, description="Needed when the service has a token (any non-loopback bind).")


class BearerAuth:
    """The dependency of every /v1 endpoint but health: with a token configured, requests must carry it."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    async def __call__(self, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if self._token is not None and (creds is None or not secrets.compare_digest(creds.credentials, self._token)):
            raise HTTPException(401, "authorization: a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})


def create_app(appliance: Appliance) -> FastAPI:
    a, cfg, tel = appliance, appliance.cfg, appliance.telemetry
    authorized = BearerAuth(cfg.token())

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if a.live is not None and not a.live.running:  # `serve` opens it before binding, tests here
            a.live.start()
        yield
        a.draining.set()
        if a.live is not None:
            a.live.stop()

    app = FastAPI(title="ntg-edge appliance", version=__version__, lifespan=lifespan,
                  description="Synthetic flows from a bundle, a local classifier that improves itself with them, "
                              "and live capture. docs/appliance.md.")
    _install_error_handlers(app, tel)

    app.add_middleware(LatencyMiddleware, telemetry=tel)

    open_v1 = APIRouter(prefix="/v1", responses=_PROBLEMS)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)], responses=_PROBLEMS)

    # -- health ------------------------------------------------------------------------------------------------
    @open_v1.get("/health/live", response_model=Health, tags=["health"])
    async def live() -> Health:
        """The process answers."""
        return Health()

    @open_v1.get("/health/ready", response_model=Readiness, tags=["health"],
                 responses={503: {"model": Readiness, "description": "Not ready: see reasons."}})
    async def ready() -> JSONResponse:
        """Ready = bundle loaded with its hashes verified, and a classifier loaded or trained."""
        reasons = [] if a.classifier is not None else ["no classifier yet (give classifier.train_flows or augment)"]
        if a.draining.is_set():
            reasons.append("shutting down")
        body = Readiness(ready=not reasons, bundle_verified=True, classifier_loaded=a.classifier is not None,
                         reasons=reasons)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    # -- introspection -------------------------------------------------------------------------------------------
    @v1.get("/metrics", tags=["operations"], response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition."}})
    async def metrics() -> Response:
        """Prometheus metrics (scrape this path)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(tel.exposition(), media_type=CONTENT_TYPE_LATEST)

    @v1.get("/bundle", response_model=BundleInfo, tags=["generator"])
    async def bundle() -> BundleInfo:
        """The loaded bundle's classes and config."""
        return BundleInfo(path=str(cfg.bundle), classes=a.classes, config=a.bundle_config)

    @v1.get("/classifier", response_model=ClassifierInfo, tags=["classifier"])
    async def classifier() -> ClassifierInfo:
        clf = a.classifier
        if clf is None:
            return ClassifierInfo(loaded=False)
        return ClassifierInfo(loaded=True, **clf.describe())

    @v1.get("/stats", response_model=Stats, tags=["operations"])
    async def stats() -> Stats:
        """Totals and throughput for the status page."""
        return Stats(uptime_s=time.time() - a.started, generated=tel.totals(tel.generated),
                     classified=tel.totals(tel.classified), generate_per_s=tel.generate_rate.per_second(),
                     classify_per_s=tel.classify_rate.per_second(), stream_clients=int(tel.value(tel.stream_clients)))

    # -- generation ----------------------------------------------------------------------------------------------
    @v1.post("/generate", response_model=GenerateResponse, tags=["generator"],
             responses={200: {"content": {PARQUET: {}}, "description": "JSON, or a flows file with format=parquet."}})
    async def generate(req: GenerateRequest) -> Response:
        """Generate `n` flows for a class mix; the same request (seed) gives the same flows."""
        if req.n > cfg.generator.max_flows:
            raise _bad("n", f"{req.n} exceeds the limit of {cfg.generator.max_flows} flows per request "
                            "(use the stream for more)")
        mix = _check_mix(req.mix, a.classes, "mix") if req.mix is not None else {c: 1.0 for c in a.classes}
        counts = apportion(req.n, mix)
        if req.length is not None and req.length > a.tok.max_packets:
            raise _bad("length", f"{req.length} exceeds the bundle's {a.tok.max_packets} packets per flow")
        flows = await run_in_threadpool(generate_flows, a.engine, a.tok, counts, cfg.generator.sampling,
                                        cfg.generator.batch_size, req.seed, req.length)
        tel.count_generated([f.label for f in flows])
        if req.format == "parquet":
            buf = io.BytesIO()
            pq.write_table(validate(flows, "generated flows"), buf)
            return Response(buf.getvalue(), media_type=PARQUET,
                            headers={"Content-Disposition": 'attachment; filename="flows.parquet"'})
        body = {"counts": counts, "seed": req.seed, "flows": [flow_dict(f) for f in flows]}
        return Response(json.dumps(body), media_type="application/json")

    @v1.get("/stream", tags=["generator"], response_class=StreamingResponse,
            responses={200: {"description": "NDJSON: one StreamFlow per line, then one StreamEnd line when the "
                                            "stream ends (count reached, or shutdown).",
                             "content": {NDJSON: {"schema": {"oneOf": [
                                 _component_schema(StreamFlow), _component_schema(StreamEnd)]}}}}})
    async def stream(
        mix: Annotated[str, Query(max_length=4096, description="'dns:2,http:1' (weights) or 'dns,http'; empty = "
                                                                "every class equally.")] = "",
        rate: Annotated[float | None, Query(gt=0, le=1e6, description="Flows per second (default: as fast as the "
                                                                       "client reads).")] = None,
        seed: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        start: Annotated[int, Query(ge=0, le=2**62, description="First sequence number to send (resume).")] = 0,
        count: Annotated[int | None, Query(ge=1, le=2**62, description="Flows to send (default: until the client "
                                                                        "disconnects).")] = None,
        batch: Annotated[int | None, Query(ge=1, le=4096, description="Flows per generated batch (default: "
                                                                       "generator.batch_size); part of the stream's "
                                                                       "identity, like seed and mix.")] = None,
        length: Annotated[int | None, Query(ge=1, le=4096, description="Force this many packets per flow.")] = None,
    ) -> StreamingResponse:
        """A continuous NDJSON stream of synthetic flows. Backpressure: a batch is generated only once the one
        before it is being sent, so a slow client slows generation and at most two batches are held per stream.
        Flow `seq` of a stream depends only on (seed, mix, batch, length, seq): resume with start=last seq+1."""
        weights = _parse_mix(mix, a.classes)
        if length is not None and length > a.tok.max_packets:
            raise _bad("length", f"{length} exceeds the bundle's {a.tok.max_packets} packets per flow")
        size = batch or cfg.generator.batch_size
        sampling = cfg.generator.sampling
        stop = None if count is None else start + count

        def make(index: int) -> list[tuple[str, str]]:
            """Batch `index` as (label, flow JSON) pairs: encoded here, in the worker thread, so the event loop only
            sends (and stays free for other requests)."""
            flows = stream_batch(a.engine, a.tok, weights, sampling, seed, index, size, length)
            return [(f.label, json.dumps(flow_dict(f))) for f in flows]

        async def lines() -> AsyncIterator[str]:
            t_open, seq, sent = time.perf_counter(), start, 0
            index, skip = divmod(start, size)
            pending: asyncio.Future = asyncio.ensure_future(run_in_threadpool(make, index))
            tel.stream_clients.inc()
            queued = 0
            try:
                while True:
                    flows = (await pending)[skip:]
                    skip = 0
                    if stop is not None:
                        flows = flows[: stop - seq]
                    index += 1
                    more = stop is None or seq + len(flows) < stop
                    # generate the next batch while this one is sent: one batch ahead, never more
                    pending = asyncio.ensure_future(run_in_threadpool(make, index)) if more else None
                    queued = len(flows)
                    tel.queue_depth.inc(queued)
                    tel.count_generated([label for label, _ in flows])
                    chunk: list[str] = []
                    for _, flow_json in flows:
                        if a.draining.is_set():
                            break
                        if rate is not None:
                            due = t_open + sent / rate
                            wait = due - time.perf_counter()
                            if wait > 0:
                                if chunk:
                                    yield "".join(chunk)
                                    chunk = []
                                await asyncio.sleep(wait)
                        chunk.append(f'{{"seq": {seq}, "flow": {flow_json}}}\n')
                        seq, sent = seq + 1, sent + 1
                        queued -= 1
                        tel.queue_depth.dec()
                        if len(chunk) >= 64:
                            yield "".join(chunk)
                            chunk = []
                    if chunk:
                        yield "".join(chunk)
                    if a.draining.is_set():
                        yield json.dumps({"end": "shutdown", "next_seq": seq}) + "\n"
                        return
                    if not more:
                        yield json.dumps({"end": "count", "next_seq": seq}) + "\n"
                        return
            finally:
                tel.queue_depth.dec(queued)
                tel.stream_clients.dec()
                if pending is not None:
                    pending.cancel()
                tel.latency.labels("GET", "/v1/stream").observe(time.perf_counter() - t_open)

        return StreamingResponse(lines(), media_type=NDJSON)

    # -- classification ------------------------------------------------------------------------------------------
    def _classifier_or_409() -> Classifier:
        clf = a.classifier
        if clf is None:
            raise HTTPException(409, "classifier: none loaded yet (train one with augment, or start with "
                                     "classifier.train_flows)")
        return clf

    @v1.post("/classify", response_model=ClassifyResponse, tags=["classifier"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _component_schema(ClassifyRequest)}}}})
    async def classify(request: Request) -> Response:
        """Class and probabilities of each flow, from the classifier in use (one classifier per request, even
        while a retrained one is being swapped in)."""
        # parsed by pydantic's own JSON reader: FastAPI's stdlib json.loads and then validation cost 2.5x as much
        req = _parse_json(ClassifyRequest, await request.body())
        if len(req.flows) > cfg.classifier.max_flows:
            raise _bad("flows", f"{len(req.flows)} flows exceed the limit of {cfg.classifier.max_flows} per request",
                       413)
        clf = _classifier_or_409()
        flows = [m.to_flow() for m in req.flows]
        labels, p = await run_in_threadpool(predict, clf, flows)
        tel.count_classified(labels, "api")
        classes = clf.classes
        # the ClassifyResponse shape, encoded directly: validating our own output again would double the cost
        body = {"classifier_version": clf.version, "predictions": [
            {"label": lab, "probabilities": dict(zip(classes, row))} for lab, row in zip(labels, p.tolist())]}
        return Response(json.dumps(body), media_type="application/json")

    # -- augment -------------------------------------------------------------------------------------------------
    async def _augment_flows(request: Request) -> tuple[list[Flow], int | None]:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if kind == NDJSON:
            flows = []
            async for line_no, line in _ndjson_lines(request):
                try:
                    flows.append(_FLOW_LINE.validate_json(line).to_flow())
                except ValidationError as e:
                    err = e.errors()[0]
                    where = ".".join(str(p) for p in err["loc"])
                    raise _bad(f"line {line_no}" + (f": {where}" if where else ""), err["msg"]) from None
                if len(flows) > cfg.augment.max_upload_flows:
                    raise _bad("body", f"more than {cfg.augment.max_upload_flows} flows", 413)
            target = request.query_params.get("target_per_class")
            try:
                t = int(target) if target is not None else None
            except ValueError:
                raise _bad("target_per_class", f"{target!r} is not an integer") from None
            if t is not None and not 1 <= t <= 100_000:
                raise _bad("target_per_class", "must be between 1 and 100000")
            return flows, t
        if kind != "application/json":
            raise HTTPException(415, f"content-type: {kind} is not accepted (application/json or {NDJSON})")
        req = _parse_json(AugmentRequest, await request.body())
        if req.path is not None:
            return _flows_from_box(req.path), req.target_per_class
        if len(req.flows) > cfg.augment.max_upload_flows:
            raise _bad("flows", f"{len(req.flows)} flows exceed the limit of {cfg.augment.max_upload_flows}", 413)
        return [m.to_flow() for m in req.flows], req.target_per_class

    def _flows_from_box(path: str) -> list[Flow]:
        root = cfg.augment.data_dir
        if root is None:
            raise HTTPException(403, "path: naming a file on the box is off (set augment.data_dir)")
        full = (Path(root) / path).resolve()
        if not full.is_relative_to(Path(root).resolve()):
            raise HTTPException(403, f"path: {path!r} is outside augment.data_dir")
        if not full.is_file():
            raise _bad("path", f"{path!r}: no such flows file in augment.data_dir", 404)
        try:
            return read_flows(full)
        except ValueError as e:
            raise _bad("path", str(e)) from None

    @v1.post("/augment", response_model=AugmentStatusModel, status_code=202, tags=["classifier"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _component_schema(AugmentRequest)},
                 NDJSON: {"schema": {"$ref": "#/components/schemas/FlowModel"}}}}},
             responses={403: {"model": Problem}, 415: {"model": Problem}})
    async def augment(request: Request) -> AugmentStatusModel:
        """Rebalance every class of the real labelled flows with synthetic flows up to target_per_class, retrain
        the classifier in the background, and swap it in only if its macro-F1 on the held-out real flows is not
        worse. Body: an AugmentRequest (JSON), or NDJSON with one flow per line (target_per_class as a query
        parameter). Poll GET /v1/augment for before/after macro-F1."""
        if a.cfg.classifier.kind != "forest":
            raise HTTPException(409, "classifier: kind onnx (your own model) is not retrained by augment")
        if a.augmenter.running:
            raise HTTPException(409, "augment: a job is running; poll GET /v1/augment until it is done")
        flows, target = await _augment_flows(request)
        if not flows:
            raise _bad("flows", "no flows")
        try:
            validate(flows, "flows")  # the project's own checks of a flows file (e.g. packets >= kept packets)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        for i, f in enumerate(flows):
            if not f.label:
                raise _bad(f"flows.{i}.label", "every uploaded flow needs its class label")
            if f.label not in a.classes:
                raise _bad(f"flows.{i}.label", f"unknown class {f.label!r} (classes: {', '.join(a.classes)})")
        if len({f.label for f in flows}) < 2:
            raise _bad("flows", "need flows of at least 2 classes to train a classifier")
        try:
            a.augmenter.start(flows, target or cfg.augment.target_per_class)
        except Busy as e:
            raise HTTPException(409, f"augment: {e}") from None
        return AugmentStatusModel(**a.augmenter.describe())

    @v1.get("/augment", response_model=AugmentStatusModel, tags=["classifier"])
    async def augment_status() -> AugmentStatusModel:
        """The running or last augment job: synthetic flows added, before/after macro-F1, whether it swapped."""
        return AugmentStatusModel(**a.augmenter.describe())

    # -- live capture --------------------------------------------------------------------------------------------
    @v1.get("/live", response_model=LiveStatus, tags=["capture"])
    async def live_status(recent: Annotated[int, Query(ge=0, le=10_000)] = 50) -> LiveStatus:
        """Flows seen on the capture interface, counts per predicted class, and the latest predictions."""
        if a.live is None:
            return LiveStatus(enabled=False)
        snap = a.live.snapshot()
        snap["recent"] = snap["recent"][:recent]
        snap.pop("time")
        return LiveStatus(enabled=True, **snap)

    app.include_router(open_v1)
    app.include_router(v1)

    # -- the status page (no build step, no CDN) ------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _ndjson_lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    """Non-empty lines of an NDJSON body as they arrive (no whole-body buffer), numbered from 1."""
    buf, line_no = b"", 0
    async for chunk in request.stream():
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            line_no += 1
            if line.strip():
                yield line_no, line
    if buf.strip():
        yield line_no + 1, buf
