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


class OutPath(click.Path):
    """An output path: like click.Path, but an empty name (which would mean the current directory) is refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("expected a file or directory name, got an empty string", param, ctx)
        return super().convert(value, param, ctx)


def out_file(help: str) -> Callable:
    return click.option("--out", required=True, type=OutPath(dir_okay=False), help=help)


def out_dir(help: str) -> Callable:
    return click.option("--out", required=True, type=OutPath(file_okay=False), help=help)


def pick(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of `kwargs` that are fields of `cls`, removed from `kwargs`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: kwargs.pop(k) for k in list(kwargs) if k in names}
