"""The appliance's configuration: one YAML file validated by pydantic (deploy/appliance.example.yaml documents it).

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting, and `load_config`
turns pydantic's report into one line naming the key. Command-line options override the file (appliance/serve.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from ..runtime.ingest import Assembly
from ..runtime.metrics import TREES
from ..runtime.sampler import Sampling

TOKEN_ENV = "NTG_EDGE_TOKEN"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="Address to bind; anything but loopback needs a token.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 = any free port).")
    token: SecretStr | None = Field(None, description=f"Bearer token for the API; the {TOKEN_ENV} environment "
                                                      "variable is used when this is unset.")
    drain_seconds: float = Field(5.0, gt=0, le=60, description="On SIGTERM, how long in-flight requests may finish.")


def _sampling_field(name: str, **limits: float) -> Any:
    """A sampling setting as a config field, its default and help text those of runtime/sampler.py's `Sampling`."""
    f = next(f for f in dataclasses.fields(Sampling) if f.name == name)
    return Field(f.default, description=f.metadata["help"], **limits)


class GeneratorConfig(_Section):
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads of the generator serving generate/stream.")
    batch_size: int = Field(1024, ge=1, le=4096, description="Flows per batch of generate and the default stream batch.")
    temperature: float = _sampling_field("temperature", gt=0, le=5)
    top_k: int = _sampling_field("top_k", ge=0)
    top_p: float = _sampling_field("top_p", gt=0, le=1)
    stratified: bool = _sampling_field("stratified")
    guidance: float = _sampling_field("guidance", ge=0, le=5)
    max_flows: int = Field(100_000, ge=1, description="Most flows one generate request may ask for.")

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_k, self.top_p, self.stratified, self.guidance)


class ClassifierConfig(_Section):
    kind: Literal["forest", "onnx"] = Field(
        "forest", description="forest: the Random Forest trained here (augment retrains it); onnx: your own ONNX "
                              "model over the same features, used as given (augment is refused).")
    path: Path | None = Field(None, description="Classifier directory (classifier.onnx + classifier.json). forest: "
                                                "where it is kept and reloaded from; onnx: your model's directory.")
    train_flows: Path | None = Field(None, description="A labelled flows file to train the forest from at start-up "
                                                       "when no classifier is stored at `path` yet.")
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads of the classifier.")
    trees: int = Field(TREES, ge=1, le=2000, description=f"Trees of the Random Forest (the benchmark uses {TREES}).")
    holdout: float = Field(0.2, gt=0, lt=1, description="Share of the real flows held out to score a classifier.")
    max_flows: int = Field(10_000, ge=1, description="Most flows one classify request may send.")


class AugmentConfig(_Section):
    threads: int = Field(1, ge=1, description="Threads of the background retrain: its forest fit and its own "
                                              "generator session (kept apart from the serving ones).")
    target_per_class: int = Field(500, ge=1, le=100_000, description="Default flows per class after rebalancing.")
    data_dir: Path | None = Field(None, description="The only folder from which augment may read a named flows file "
                                                    "(unset: naming a file on the box is refused).")
    max_upload_flows: int = Field(200_000, ge=1, description="Most real flows one augment request may upload.")
    seed: int = Field(0, ge=0)


_ASSEMBLY = Assembly()


class CaptureConfig(_Section):
    interface: str | None = Field(None, description="Capture and classify live traffic on this interface.")
    bpf: str | None = Field(None, description="BPF filter for the capture, e.g. 'tcp or udp port 53'.")
    classify_at: int = Field(8, ge=1, description="Classify a flow once it has this many packets (or when it ends).")
    # ingest's defaults (runtime/ingest.py Assembly), so that live flows are assembled as captured files are
    max_packets: int = Field(_ASSEMBLY.max_packets, ge=1, description="Packets kept per flow.")
    idle_timeout: float = Field(_ASSEMBLY.idle_timeout, gt=0, description="Seconds without a packet that end a flow.")
    active_timeout: float = Field(_ASSEMBLY.active_timeout, gt=0, description="Seconds after which a flow is cut.")
    recent: int = Field(100, ge=1, le=10_000, description="Recent predictions kept for the API and the page.")

    @model_validator(mode="after")
    def _classify_within_kept(self) -> "CaptureConfig":
        if self.classify_at > self.max_packets:
            raise ValueError(f"classify_at {self.classify_at} exceeds max_packets {self.max_packets}")
        return self


class ApplianceConfig(_Section):
    bundle: Path | None = Field(None, description="The generator bundle (a directory with manifest.json).")
    server: ServerConfig = ServerConfig()
    generator: GeneratorConfig = GeneratorConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    augment: AugmentConfig = AugmentConfig()
    capture: CaptureConfig = CaptureConfig()

    def token(self) -> str | None:
        """The bearer token: the config's, else the environment's, else None."""
        if self.server.token is not None:
            return self.server.token.get_secret_value() or None
        return os.environ.get(TOKEN_ENV) or None

    def check_exposure(self) -> None:
        """Binding beyond loopback without a token is refused: the API can retrain the classifier."""
        if not is_loopback(self.server.host) and not self.token():
            raise ValueError(f"server.host {self.server.host}: binding beyond loopback needs a token "
                             f"(server.token or ${TOKEN_ENV})")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost could resolve anywhere


def _one_line(source: str, e: ValidationError) -> str:
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> ApplianceConfig:
    """The config from a YAML file (or the defaults) with `overrides` ({"server": {"port": 9000}, ...}) applied on
    top. ValueError with one line naming the file and the key on any problem."""
    data: dict = {}
    source = str(path) if path else "config"
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read config: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config is a mapping of sections, got {type(data).__name__}")
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            base = data.get(section)
            data[section] = {**(base if isinstance(base, dict) else {}), **values}
        else:
            data[section] = values
    try:
        return ApplianceConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(_one_line(source, e)) from None
