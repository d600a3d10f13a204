"""manifest.json: the sha256 of every file of a model directory (a training run or a bundle), checked before loading.

    {"format": "ntg-edge-run/1" | "ntg-edge-bundle/1", "files": {name: sha256}}

A model that changed on disk (a flipped byte, a truncated copy, a hand edit) is refused with one line naming the file,
instead of generating from weights nobody trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"
CONFIG = "config.yaml"  # every model directory's config: tokenizer, model, provenance
RUN_FORMAT, BUNDLE_FORMAT = "ntg-edge-run/1", "ntg-edge-bundle/1"


class ManifestError(ValueError):
    """A model directory that is missing, incomplete or modified."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(root: str | Path, fmt: str, names: list[str] | None = None) -> dict:
    """Hash `names` (default: every file under `root` but the manifest) into root/manifest.json."""
    root = Path(root)
    if names is None:
        names = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST]
    manifest = {"format": fmt, "files": {n: sha256(root / n) for n in names}}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_format(root: str | Path) -> str | None:
    """The manifest's format, or None where there is no readable manifest."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def read_manifest(root: str | Path) -> dict[str, str]:
    """The manifest's {file: sha256}; ManifestError (one line) where it is missing or not of that shape."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise ManifestError(f"{root}: no {MANIFEST} (not written by ntg-edge, or copied without it)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ManifestError(f"{root}/{MANIFEST}: unreadable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ManifestError(f"{root}/{MANIFEST}: 'files' must map file names to sha256 digests")
    if any(Path(k).is_absolute() or ".." in Path(k).parts for k in files):
        raise ManifestError(f"{root}/{MANIFEST}: lists a file outside its folder")
    return files


def verify(root: str | Path, fmt: str, required: tuple[str, ...]) -> None:
    """Check root/manifest.json: of format `fmt`, listing `required`, every listed file present with its hash."""
    root = Path(root)
    files = read_manifest(root)
    got = read_format(root)
    if got != fmt:
        raise ManifestError(f"{root}/{MANIFEST}: format {got!r}, expected {fmt!r}")
    for need in required:
        if need not in files:
            raise ManifestError(f"{root}/{MANIFEST}: does not list {need}")
    for name, digest in files.items():
        path = root / name
        if not path.is_file():
            raise ManifestError(f"{root}/{name}: missing (listed in {MANIFEST})")
        if sha256(path) != digest:
            raise ManifestError(f"{root}/{name}: sha256 does not match {MANIFEST} (modified or corrupt)")


def yaml_text(data: object) -> str:
    """A run's or bundle's config as YAML: keys in their order, lists of scalars on one line (the length counts)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def read_yaml(path: Path) -> object:
    """A YAML file's content; ValueError naming the file where it is not UTF-8 YAML."""
    import yaml

    try:
        # libyaml's loader where PyYAML has it: a factorised head's length counts are tens of KB of config
        return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
