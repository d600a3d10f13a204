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


def config_options(cls: type, exclude: tuple[str, ...] = ()) -> Callable:
    """A decorator adding one option per documented field of dataclass `cls` (`--max-packets` for max_packets)."""
    fields = [f for f in dataclasses.fields(cls) if "help" in f.metadata and f.name not in exclude]

    def decorate(fn: Callable) -> Callable:
        for f in reversed(fields):
            name = "--" + f.name.replace("_", "-")
            if isinstance(f.default, bool):
                name = f"{name}/--no-{f.name.replace('_', '-')}"
            fn = click.option(name, f.name, type=None if isinstance(f.default, bool) else _type(f), default=f.default,
                              show_default=True, help=f.metadata["help"])(fn)
        return fn

    return decorate


def _defaults(by_model: dict[str, dataclasses.Field]) -> str:
    """'4' where every model has the same default, else 'llama 160, mamba 72'."""
    values = {str(f.default) for f in by_model.values()}
    return values.pop() if len(values) == 1 else ", ".join(f"{m} {f.default}" for m, f in by_model.items())


def model_options(configs: dict[str, type]) -> Callable:
    """One option per documented field of any model config (`--model NAME` -> config class), each declared once even
    where several models have it (--dim, --n-layers, --dropout). Defaults are None, so an option not given takes the
    chosen model's own default (the help shows each model's); `model_settings` refuses one the model does not have."""
    owners: dict[str, dict[str, dataclasses.Field]] = {}
    for model, cls in configs.items():
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                owners.setdefault(f.name, {})[model] = f

    def decorate(fn: Callable) -> Callable:
        for name, by_model in reversed(owners.items()):
            f = next(iter(by_model.values()))
            only = "" if len(by_model) == len(configs) else f"{', '.join(by_model)} only: "
            fn = click.option("--" + name.replace("_", "-"), name, type=_type(f), default=None,
                              show_default=_defaults(by_model), help=only + f.metadata["help"])(fn)
        return fn

    return decorate


def model_settings(model: str, configs: dict[str, type], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model options given on the command line (removed from `kwargs`); a UsageError for one that `model` lacks."""
    names = {f.name for cls in configs.values() for f in dataclasses.fields(cls)}
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
