"""Settings declared once: a dataclass field holds a setting's default, help text and valid range.

The config dataclasses (runtime/settings.py, runtime/ingest.py, runtime/split.py) are the single source of defaults; the
command line derives its options from them (appliance/options.py), and `check` refuses out-of-range values with a
message naming the setting, whether they came from the command line, a config file or Python.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

SEED_MAX = 2**32 - 1  # the largest seed numpy and scikit-learn accept


def knob(default: Any, help: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
         hi_open: bool = False, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its help text and range: lo <= value <= hi (strict where *_open)."""
    meta = {"help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


def describe(meta: dict) -> str:
    """The valid range in words: '> 0', '0 <= x < 1', 'one of a, b'."""
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    left = "" if lo is None else f"{lo:g} {'<' if meta['lo_open'] else '<='} "
    right = "" if hi is None else f" {'<' if meta['hi_open'] else '<='} {hi:g}"
    if lo is not None and hi is None:
        return f"{'>' if meta['lo_open'] else '>='} {lo:g}"
    return f"{left}x{right}"


def problem(value: Any, meta: dict) -> str | None:
    """Why `value` is out of the field's range, or None."""
    if meta.get("choices"):
        return None if value in meta["choices"] else f"expected {describe(meta)}, got {value!r}"
    if meta.get("lo") is None and meta.get("hi") is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"expected a number {describe(meta)}, got {value!r}"
    lo, hi = meta["lo"], meta["hi"]
    bad_lo = lo is not None and (value <= lo if meta["lo_open"] else value < lo)
    bad_hi = hi is not None and (value >= hi if meta["hi_open"] else value > hi)
    return f"expected {describe(meta)}, got {value!r}" if bad_lo or bad_hi else None


def check(obj: Any) -> None:
    """ValueError('name: expected ..., got ...') for the first field of `obj` outside its range or of the wrong type."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if "help" not in f.metadata:
            continue
        kind = type(f.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            object.__setattr__(obj, f.name, value)
        if kind in (int, float, bool, str) and type(value) is not kind:
            raise ValueError(f"{f.name}: expected {kind.__name__}, got {value!r}")
        why = problem(value, f.metadata)
        if why:
            raise ValueError(f"{f.name}: {why}")
