"""The benchmark split: labelled flows → capped, stratified train/test sets (the `ntg-edge split` stage).

Many applications of the real corpus come from one capture, and a few captures dominate a label (most `HTTP` flows
come from one web-attack capture, most `BitTorrent` flows from one session). So each (capture, class) pair keeps at
most `cap_per_file` flows (default 50: it cuts `HTTP`'s largest capture from over 80% of the class to about a fifth)
and each class at most `cap_per_class`, both drawn at random with the split's seed; classes left with fewer than
`min_flows` flows are dropped; the rest is split train/test stratified by class.

What the split leaves out is not wasted: `other_flows` keeps the flows of the dropped classes (and unlabelled ones)
from captures that hold no test flow, for `train --other-flows` to learn with their class hidden. A capture with a
test flow gives none, lest a flow beside a test flow (its DNS lookup, a parallel connection) teach the test split.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from .flows import Flow
from .knobs import SEED_MAX, check, knob

DROPPED_LABELS = ("", "Unknown")


@dataclass(frozen=True)
class SplitConfig:
    min_packets: int = knob(3, "Flows with fewer packets are dropped.", lo=1)
    min_flows: int = knob(20, "Classes with fewer flows (after the caps) are dropped.", lo=2)
    cap_per_class: int = knob(500, "Most flows kept per class.", lo=1)
    cap_per_file: int = knob(50, "Most flows kept per class from one capture.", lo=1)
    test_size: float = knob(0.2, "Share of each class held out for test.", lo=0, hi=1, lo_open=True, hi_open=True)
    seed: int = knob(0, "Random seed of the caps and the split.", lo=0, hi=SEED_MAX)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ClassRow:
    name: str
    flows: int  # after the caps
    files: int  # captures the kept flows come from
    train: int
    test: int


def class_name(label: str) -> str:
    """The application of an nDPI label: its last dotted component (`TLS.Google` → `Google`)."""
    return label.rsplit(".", 1)[-1]


def split_flows(flows: list[Flow], c: SplitConfig = SplitConfig()) -> tuple[list[Flow], list[Flow], list[ClassRow]]:
    """(train, test, class table). Returned flows are copies whose `label` is the class name; the table is sorted by
    flow count, largest first. Raises ValueError if no class is left."""
    min_packets, min_flows, cap_per_class, cap_per_file = c.min_packets, c.min_flows, c.cap_per_class, c.cap_per_file
    rng = np.random.default_rng(c.seed)
    groups: dict[tuple[str, str], list[Flow]] = defaultdict(list)
    for f in flows:
        name = class_name(f.label)
        if f.packets >= min_packets and name not in DROPPED_LABELS:
            groups[name, f.file].append(replace(f, label=name))

    def sample(items: list[Flow], cap: int) -> list[Flow]:
        if len(items) <= cap:
            return items
        return [items[i] for i in sorted(rng.choice(len(items), cap, replace=False))]  # sorted: keep capture order

    by_class: dict[str, list[Flow]] = defaultdict(list)
    for (name, _), items in sorted(groups.items()):  # sorted: the draws depend on the seed only, not input order
        by_class[name] += sample(items, cap_per_file)
    kept = {name: sample(items, cap_per_class) for name, items in sorted(by_class.items())}
    kept = {name: items for name, items in kept.items() if len(items) >= min_flows}
    if not kept:
        raise ValueError(f"no class has {min_flows} flows of {min_packets}+ packets after the caps")

    # imported here: scikit-learn takes over a second to import, and every CLI command imports this module's settings
    from sklearn.model_selection import train_test_split

    pool = [f for items in kept.values() for f in items]
    train, test = train_test_split(pool, test_size=c.test_size, random_state=c.seed, stratify=[f.label for f in pool])
    table = []
    for name, items in kept.items():
        table.append(ClassRow(name, len(items), len({f.file for f in items}),
                              sum(f.label == name for f in train), sum(f.label == name for f in test)))
    table.sort(key=lambda r: (-r.flows, r.name))
    return train, test, table


def other_flows(flows: list[Flow], train: list[Flow], test: list[Flow],
                c: SplitConfig = SplitConfig()) -> list[Flow]:
    """Flows of `c.min_packets`+ packets whose class is not one of the split's, from captures with no test flow
    (module doc); labels as the split names them (`class_name`)."""
    classes = {f.label for f in train}
    test_files = {f.file for f in test}
    return [replace(f, label=class_name(f.label)) for f in flows
            if f.packets >= c.min_packets and class_name(f.label) not in classes and f.file not in test_files]


def format_table(table: list[ClassRow]) -> list[str]:
    """The class table as aligned text lines, with a total line."""
    width = max([len("class")] + [len(r.name) for r in table])
    lines = [f"{'class':<{width}}  {'flows':>6} {'files':>6} {'train':>6} {'test':>6}"]
    lines += [f"{r.name:<{width}}  {r.flows:>6} {r.files:>6} {r.train:>6} {r.test:>6}" for r in table]
    flows, train, test = (sum(getattr(r, k) for r in table) for k in ("flows", "train", "test"))
    lines.append(f"{f'{len(table)} classes':<{width}}  {flows:>6} {'':>6} {train:>6} {test:>6}")
    return lines
