"""Command-line options derived from the config dataclasses (runtime/knobs.py), so each default, help text and range
is written once: `--epochs` is TrainConfig.epochs, with its range enforced by click before anything runs."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import click


def _type(f: dataclasses.Field) -> click.ParamType | type:
    m = f.metadata
    if m.get("choices"):
        return click.Choice(m["choices"])
    kind = type(f.default)
    if kind not in (int, float) or (m.get("lo") is None and m.get("hi") is None):
        return kind
    rng = click.IntRange if kind is int else click.FloatRange
    return rng(min=m["lo"], max=m["hi"], min_open=m["lo_open"], max_open=m["hi_open"])


def config_options(cls: type, exclude: tuple[str, ...] = (), notes: dict[str, str] | None = None) -> Callable:
    """A decorator adding one option per documented field of dataclass `cls` (`--max-packets` for max_packets);
    `notes` adds a sentence to some options' help."""
    fields = [f for f in dataclasses.fields(cls) if "help" in f.metadata and f.name not in exclude]
    notes = notes or {}

    def decorate(fn: Callable) -> Callable:
        for f in reversed(fields):
            name = "--" + f.name.replace("_", "-")
            if isinstance(f.default, bool):
                name = f"{name}/--no-{f.name.replace('_', '-')}"
            fn = click.option(name, f.name, type=None if isinstance(f.default, bool) else _type(f), default=f.default,
                              show_default=True, help=" ".join([f.metadata["help"], notes.get(f.name, "")]).strip())(fn)
        return fn

    return decorate


def _defaults(by_model: dict[str, dataclasses.Field]) -> str:
    """'4' where every model has the same default, else 'llama 160, mamba 72'."""
    values = {str(f.default) for f in by_model.values()}
    return values.pop() if len(values) == 1 else ", ".join(f"{m} {f.default}" for m, f in by_model.items())


def _owners(configs: dict[str, type]) -> dict[str, dict[str, dataclasses.Field]]:
    """Each documented field name -> {model: its field} of the models that have it."""
    owners: dict[str, dict[str, dataclasses.Field]] = {}
    for model, cls in configs.items():
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                owners.setdefault(f.name, {})[model] = f
    return owners


def shared_notes(configs: dict[str, type], cls: type) -> dict[str, str]:
    """For each field of `cls` that some model configs have too, a help note: those models take it as their own
    setting, with their own default (`config_options(cls, notes=...)`; `model_options(exclude=...)` then skips it)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {name: f"With --model {', '.join(by_model)}: their own setting (default {_defaults(by_model)})."
            for name, by_model in _owners(configs).items() if name in names}


def model_options(configs: dict[str, type], exclude: tuple[str, ...] = ()) -> Callable:
    """One option per documented field of any model config (`--model NAME` -> config class), each declared once even
    where several models have it (--dim, --n-layers, --dropout). Defaults are None, so an option not given takes the
    chosen model's own default (the help shows each model's); `model_settings` refuses one the model does not have.
    Fields named in `exclude` are left to another decorator."""
    owners = {name: by_model for name, by_model in _owners(configs).items() if name not in exclude}

    def decorate(fn: Callable) -> Callable:
        for name, by_model in reversed(owners.items()):
            f = next(iter(by_model.values()))
            helps = {m: g.metadata["help"] for m, g in by_model.items()}
            if len(set(helps.values())) > 1:  # each model's own words (--packets means a different N to each)
                text = " ".join(f"{m}: {h}" for m, h in helps.items())
            else:
                text = ("" if len(by_model) == len(configs) else f"{', '.join(by_model)} only: ") + f.metadata["help"]
            # one range where the models agree on it; otherwise the chosen model's config checks its own
            ranges = {tuple(g.metadata.get(k) for k in ("lo", "hi", "lo_open", "hi_open")) for g in by_model.values()}
            fn = click.option("--" + name.replace("_", "-"), name, type=_type(f) if len(ranges) == 1 else
                              type(f.default), default=None, show_default=_defaults(by_model), help=text)(fn)
        return fn

    return decorate


def model_settings(model: str, configs: dict[str, type], kwargs: dict[str, Any],
                   exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The model options given on the command line (removed from `kwargs`); a UsageError for one that `model` lacks.
    `exclude`: as given to `model_options` (those options stay in `kwargs`)."""
    names = {f.name for cls in configs.values() for f in dataclasses.fields(cls)} - set(exclude)
    given = {k: v for k in list(kwargs) if k in names for v in [kwargs.pop(k)] if v is not None}
    own = {f.name for f in dataclasses.fields(configs[model])}
    foreign = [k for k in given if k not in own]
    if foreign:
        raise click.UsageError(f"--{foreign[0].replace('_', '-')}: not an option of --model {model}")
    return given


class OutPath(click.Path):
    """An output path: like click.Path, but an empty name (which would mean the current directory) is refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("expected a file or directory name, got an empty string", param, ctx)
        if isinstance(value, str) and not self.dir_okay and value.endswith(("/", "\\")):
            self.fail(f"{value!r} names a folder; expected a file name", param, ctx)
        return super().convert(value, param, ctx)


def out_file(help: str) -> Callable:
    return click.option("--out", required=True, type=OutPath(dir_okay=False), help=help)


def out_dir(help: str) -> Callable:
    return click.option("--out", required=True, type=OutPath(file_okay=False), help=help)


def positive_ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """A click callback: '1,64,1024' -> (1, 64, 1024), every number >= 1."""
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}") from None
    if any(v < 1 for v in out):
        raise click.BadParameter(f"expected numbers >= 1, got {value!r}")
    return out
