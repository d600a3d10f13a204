"""One tokenizer for every stage: a flow is a class token, then one token per packet, then <EOS>.

A packet token is (direction, payload length): 2 x (max_len + 1) ids, as in the reference study. Each packet also
carries an inter-arrival bin on a second, aligned stream (log-spaced bins), which lifts the study's no-timing limit
without growing the packet vocabulary.

Ids: 0 <PAD>, 1 <EOS>, 2 .. 2+C-1 class tokens, then packet tokens: upstream lengths 0..max_len, downstream 0..max_len,
then (with `length_token`) one id per flow-length bucket. With it a flow is: class, its length bucket, packets, <EOS>:
the model draws how long the flow will be before its first packet, so the early packets know whether it is long.
With a factorised head (`length_head`, runtime/lengths.py) the model scores length buckets and the sampler draws each
exact length inside its bucket from the flow's class (`head.redraw`); `decode` returns the ids' own lengths.
A payload longer than max_len (a jumbo frame, or a segmentation-offload super-packet in a capture taken on the
sending host) is clipped to max_len: the tokenizer is exact for in-range flows and saturates above. What has no token
is refused with a ValueError instead of becoming another token: a negative payload length (it would become another
packet's or a class's id), a direction other than +1/-1, a class outside the model's list, an inter-arrival time that is
negative or not finite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

import numpy as np

from .flows import DOWN, UP, Flow
from .lengths import LengthHead

PAD, EOS = 0, 1
N_SPECIAL = 2


@dataclass(frozen=True)
class Tokenizer:
    classes: tuple[str, ...]
    max_len: int = 1500  # covers UDP over IPv4 at MTU 1500 (1472) and TCP with MSS 1460
    max_packets: int = 64
    iat_bins: int = 32  # bin 0 = "no gap" (first packet, < iat_min); bins 1.. log-spaced up to iat_max
    iat_min: float = 1e-6
    iat_max: float = 1800.0
    length_token: bool = False
    # The model also learnt flows whose class is hidden, <PAD> in the class slot (train --class-dropout or
    # --other-flows): the scores that classifier-free guidance (runtime/sampler.py) steers a class away from.
    any_class: bool = False
    # A factorised head's training packets (runtime/lengths.py): {"per_direction": K, "counts": {class: [packet id,
    # packets, packet id, packets, ...]}}, from which `head` draws each exact length inside its bucket per class.
    length_head: dict | None = field(default=None, hash=False)
    _edges: np.ndarray = field(init=False, repr=False, compare=False)
    _length_lows: np.ndarray = field(init=False, repr=False, compare=False)
    _head: LengthHead | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        # what a config.yaml read from disk may hold: checked, so that a damaged one is a line, not a numpy error
        if not self.classes or not all(isinstance(c, str) for c in self.classes) or len(set(self.classes)) < len(
                self.classes):
            raise ValueError(f"classes: expected distinct class names, got {list(self.classes)[:5]!r}")
        for name, least, most in (("max_len", 1, 65535), ("max_packets", 1, 4096), ("iat_bins", 2, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
                raise ValueError(f"{name}: expected a whole number {least} .. {most}, got {value!r}")
        if not (isinstance(self.iat_min, (int, float)) and isinstance(self.iat_max, (int, float))
                and 0 < self.iat_min < self.iat_max < float("inf")):
            raise ValueError(f"iat_min, iat_max: expected 0 < iat_min < iat_max, got {self.iat_min!r}, {self.iat_max!r}")
        for name in ("length_token", "any_class"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        edges = np.geomspace(self.iat_min, self.iat_max, self.iat_bins)  # edges[0] = iat_min
        object.__setattr__(self, "_edges", edges)
        # length buckets: lowest packet count of each, about sqrt(2) apart (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45), and
        # flows cut at the horizon (max_packets) alone: "longer than the model sees" is its own answer
        lows = np.unique(np.round(np.sqrt(2.0) ** np.arange(2 * np.log2(self.max_packets) + 1)).astype(np.int64))
        object.__setattr__(self, "_length_lows", np.append(lows[lows < self.max_packets], self.max_packets))
        object.__setattr__(self, "_head", None if self.length_head is None else self._fit_head(self.length_head))

    def _fit_head(self, spec: object) -> LengthHead:
        """The head's tables from its config section, checked: a damaged one is a line naming what is wrong."""
        want = "expected {per_direction: a whole number >= 1, counts: {class: [packet id, packets, ...]}}"
        if not isinstance(spec, dict) or set(spec) != {"per_direction", "counts"} or not isinstance(
                spec["counts"], dict) or isinstance(spec["per_direction"], bool) or not isinstance(
                spec["per_direction"], int) or spec["per_direction"] < 1:
            raise ValueError(f"length_head: {want}")
        counts = np.zeros((self.n_classes, self.packet_end - self.packet_base))
        for label, pairs in spec["counts"].items():
            if label not in self.classes:
                raise ValueError(f"length_head: counts of class {label!r}, which is not one of the classes")
            try:
                table = np.asarray(pairs).reshape(-1, 2)
            except (TypeError, ValueError):
                raise ValueError(f"length_head: class {label!r}: {want}") from None
            if table.size and table.dtype.kind not in "iu":
                raise ValueError(f"length_head: class {label!r}: {want}")
            ids, n = table.astype(np.int64).T
            if not (self.is_packet(ids).all() and (n >= 0).all()):
                raise ValueError(f"length_head: class {label!r}: expected packet ids {self.packet_base} .. "
                                 f"{self.packet_end - 1} and counts >= 0")
            np.add.at(counts[self.classes.index(label)], ids - self.packet_base, n)
        return LengthHead.fit(counts, spec["per_direction"], self.packet_base, self.vocab_size)

    def with_length_head(self, flows: Iterable[Flow], per_direction: int) -> "Tokenizer":
        """This tokenizer with a factorised head of `per_direction` buckets per direction, from the first max_packets
        packets of each flow."""
        counts: dict[str, dict[int, int]] = {c: {} for c in self.classes}
        for f in flows:
            n = min(len(f.pl), self.max_packets)
            ids, k = np.unique(self.packet_tokens(np.asarray(f.dir[:n]), np.asarray(f.pl[:n])), return_counts=True)
            row = counts[f.label]
            for i, m in zip(ids.tolist(), k.tolist()):
                row[i] = row.get(i, 0) + m
        spec = {"per_direction": per_direction,
                "counts": {c: [x for pair in sorted(v.items()) for x in pair] for c, v in counts.items()}}
        return replace(self, length_head=spec)

    @property
    def head(self) -> LengthHead | None:
        """The factorised head's tables, or None."""
        return self._head

    # -- sizes -------------------------------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def packet_base(self) -> int:
        return N_SPECIAL + self.n_classes

    @property
    def packet_end(self) -> int:
        """One past the last packet id: the first length id."""
        return self.packet_base + 2 * (self.max_len + 1)

    @property
    def n_lengths(self) -> int:
        """Length ids in the vocabulary (0 without `length_token`)."""
        return len(self._length_lows) if self.length_token else 0

    @property
    def vocab_size(self) -> int:
        return self.packet_end + self.n_lengths

    @property
    def block_size(self) -> int:
        """Longest token sequence: class token, [length bucket,] max_packets packets, <EOS>."""
        return self.max_packets + 2 + self.length_token

    # -- ids -----------------------------------------------------------------------------------------------------------
    def class_token(self, label: str) -> int:
        try:
            return N_SPECIAL + self.classes.index(label)
        except ValueError:
            raise ValueError(f"class {label!r} is not one of the model's {self.n_classes} classes") from None

    def packet_tokens(self, dirs: np.ndarray, pls: np.ndarray) -> np.ndarray:
        """(dir, pl) -> ids; pl above max_len is clipped, a negative pl or a dir other than +1/-1 is refused."""
        pl, dirs = np.asarray(pls), np.asarray(dirs)
        if pl.size and pl.dtype.kind not in "iu":  # a cast would truncate 2.5 to 2 silently
            raise ValueError(f"payload lengths are {pl.dtype}, expected integers")
        pl = pl.astype(np.int64)
        if pl.shape != dirs.shape:
            raise ValueError(f"{pl.size} payload lengths but {dirs.size} directions (expected one per packet)")
        bad = np.flatnonzero(pl < 0)
        if bad.size:
            raise ValueError(f"packet {bad[0]}: payload length {pl[bad[0]]} is negative (no token represents it)")
        bad = np.flatnonzero((dirs != UP) & (dirs != DOWN))
        if bad.size:
            raise ValueError(f"packet {bad[0]}: direction {dirs[bad[0]]!r} is not +1 or -1")
        down = (dirs == DOWN).astype(np.int64)
        return self.packet_base + down * (self.max_len + 1) + np.minimum(pl, self.max_len)

    def is_packet(self, ids):
        """Which ids are packets (numpy or torch, any shape)."""
        return (ids >= self.packet_base) & (ids < self.packet_end)

    def length_id(self, n_packets: int) -> int:
        """The length id of a flow of n_packets kept packets (needs `length_token`)."""
        return self.packet_end + max(int(np.searchsorted(self._length_lows, n_packets, side="right")) - 1, 0)

    def length_ids(self) -> range:
        return range(self.packet_end, self.vocab_size)

    def unpack(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Packet token ids -> (dir, pl)."""
        off = np.asarray(ids, dtype=np.int64) - self.packet_base
        down = off > self.max_len
        return np.where(down, DOWN, UP), np.where(down, off - self.max_len - 1, off)

    def iat_to_bin(self, iat: np.ndarray) -> np.ndarray:
        # searchsorted: iat < edges[0] -> 0; edges[k-1] <= iat < edges[k] -> k; beyond the last edge -> last bin.
        return np.minimum(np.searchsorted(self._edges, np.asarray(iat, dtype=np.float64), side="right"),
                          self.iat_bins - 1)

    def bin_to_iat(self, bins: np.ndarray) -> np.ndarray:
        """Geometric centre of each bin; bin 0 decodes to 0 s."""
        e = self._edges
        centres = np.concatenate([[0.0], np.sqrt(e[:-1] * e[1:])])
        return centres[np.asarray(bins, dtype=np.int64)]

    # -- flows <-> sequences ---------------------------------------------------------------------------------------
    def encode(self, flow: Flow, hide_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Flow -> (token ids, iat bins), both of length len(packets) + 2: class, packets, <EOS>. Raises ValueError,
        naming the flow's class, for what has no token (see the module doc) or unaligned pl/dir/iat. With
        `hide_class` the class slot is <PAD> (any class, `any_class`), and the flow's label need not be a class."""
        if not len(flow.pl) == len(flow.dir) == len(flow.iat):
            raise ValueError(f"flow of class {flow.label!r}: {len(flow.pl)} payload lengths, {len(flow.dir)} "
                             f"directions, {len(flow.iat)} inter-arrivals (expected one of each per packet)")
        n = min(len(flow.pl), self.max_packets)
        first = 1 + self.length_token  # index of the first packet
        toks = np.empty(n + first + 1, dtype=np.int64)
        bins = np.zeros(n + first + 1, dtype=np.int64)
        toks[0] = PAD if hide_class else self.class_token(flow.label)
        if self.length_token:
            toks[1] = self.length_id(n)
        try:
            toks[first : first + n] = self.packet_tokens(flow.dir[:n], flow.pl[:n])
        except ValueError as e:
            raise ValueError(f"flow of class {flow.label!r}: {e}") from None
        toks[first + n] = EOS
        if n:
            iat = np.asarray(flow.iat[:n], dtype=np.float64)
            if not (np.isfinite(iat) & (iat >= 0)).all():
                raise ValueError(f"flow of class {flow.label!r}: an inter-arrival time is negative or not finite")
            bins[first : first + n] = self.iat_to_bin(iat)
            bins[first] = 0  # the first packet has no predecessor
        return toks, bins

    def decode(self, toks: np.ndarray, bins: np.ndarray, label: str) -> Flow:
        """Generated ids (without the class token; a leading length id is skipped) -> Flow; stops at the first
        non-packet token."""
        toks, bins = np.asarray(toks), np.asarray(bins)
        if len(toks) and toks[0] >= self.packet_end:
            toks, bins = toks[1:], bins[1:]
        stop = np.flatnonzero(~self.is_packet(toks))
        n = int(stop[0]) if stop.size else len(toks)
        dirs, pls = self.unpack(toks[:n])
        iat = self.bin_to_iat(bins[:n])
        if n:
            iat[0] = 0.0
        return Flow(label=label, packets=n, bytes=int(pls.sum()), pl=pls.tolist(), dir=dirs.tolist(), iat=iat.tolist())

    # -- persistence (lives in the run's / bundle's config.yaml) ---------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_edges")
        d.pop("_length_lows")
        d.pop("_head")
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        return cls(**d)
