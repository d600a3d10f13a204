"""Tokenizer, model, sampler, metrics, the checkpoint rule and the train -> generate -> evaluate path, on real flows of
the shipped captures (data/captures)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ntg_edge.appliance.cli import main
from ntg_edge.runtime import metrics
from ntg_edge.runtime.flows import Flow, read_flows, write_flows
from ntg_edge.runtime.sampler import Sampling, generate, sample
from ntg_edge.runtime.tokenizer import EOS, Tokenizer
from ntg_edge.train.checkpoint import load_run
from ntg_edge.runtime.settings import ModelConfig
from ntg_edge.train.data import pad
from ntg_edge.train.engine import TorchEngine
from ntg_edge.train.model import Transformer
from ntg_edge.train.train import CheckpointRule, ema_update

from conftest import TINY


def test_tokenizer_round_trip_on_real_flows(demo_flows):
    flows = [f for f in demo_flows[0] if f.pl]
    tok = Tokenizer(classes=tuple(sorted({f.label for f in flows})))
    for f in flows:
        toks, bins = tok.encode(f)
        assert toks[-1] == EOS and len(toks) == min(len(f.pl), 64) + 2
        back = tok.decode(toks[1:], bins[1:], f.label)
        n = len(back.pl)
        assert back.dir == f.dir[:n]
        assert back.pl == [min(p, tok.max_len) for p in f.pl[:n]]
        # timing survives within its log bin (bin width ratio ~1.6 over 1 us .. 1800 s)
        real, got = np.array(f.iat[1:n]), np.array(back.iat[1:])
        ok = (real < tok.iat_min) | ((got / np.maximum(real, 1e-12) < 2.0) & (real / np.maximum(got, 1e-12) < 2.0))
        assert ok.all()


def test_tokenizer_clips_oversized_payloads():
    tok = Tokenizer(classes=("a",))
    toks, bins = tok.encode(Flow(label="a", pl=[0, 9000, 1500], dir=[1, -1, -1], iat=[0, 0.1, 0.2]))
    assert tok.decode(toks[1:], bins[1:], "a").pl == [0, 1500, 1500]


def test_length_head_draws_each_class_its_own_lengths(demo_flows):
    """A factorised head keeps the bucket the model drew and draws the exact length inside it from the flow's class
    (runtime/lengths.py): where two classes' training lengths in a bucket differ, each draws in its own shares. The
    counts survive the config round trip; a damaged config is a line naming the section; decode stays exact."""
    import yaml

    flows = [f for f in demo_flows[0] if f.pl]
    tok = Tokenizer(classes=tuple(sorted({f.label for f in flows}))).with_length_head(flows, 16)
    h = tok.head
    assert Tokenizer.from_dict(yaml.safe_load(yaml.safe_dump(tok.to_dict()))) == tok
    bad = {**tok.to_dict(), "length_head": {"per_direction": 16, "counts": {"nope": [tok.packet_base, 1]}}}
    with pytest.raises(ValueError, match="length_head: counts of class 'nope'"):
        Tokenizer.from_dict(bad)
    counts = np.zeros((tok.n_classes, tok.vocab_size))
    for f in flows:
        n = min(len(f.pl), tok.max_packets)
        np.add.at(counts[tok.classes.index(f.label)], tok.packet_tokens(np.array(f.dir[:n]), np.array(f.pl[:n])), 1)
    # the bucket shared by two classes with at least 50 packets each, whose shares inside it differ most
    best = None
    for o in np.unique(h.head_of[tok.packet_base : tok.packet_end]):
        members = np.flatnonzero(h.head_of == o)
        inside = counts[:, members]
        rich = np.flatnonzero(inside.sum(1) >= 50)
        for a in rich:
            for b in rich[rich > a]:
                gap = np.abs(inside[a] / inside[a].sum() - inside[b] / inside[b].sum()).sum()
                if best is None or gap > best[0]:
                    best = (gap, members, a, b)
    gap, members, a, b = best
    assert gap > 0.5 and len(members) > 1
    rng = np.random.default_rng(0)
    u = rng.random((2, 4000))
    both = h.redraw(np.full((2, 4000), members[-1]), np.array([a, b]), u)  # a batch: each row its own class
    for row, c in enumerate((a, b)):
        drawn = h.redraw(np.full(4000, members[-1]), c, u[row])
        assert (drawn == both[row]).all() and np.isin(drawn, members).all()
        share = np.bincount(drawn - members[0], minlength=len(members)) / 4000
        assert np.abs(share - counts[c, members] / counts[c, members].sum()).max() < 0.05
    f = next(f for f in flows if len(f.pl) > 3)
    toks, bins = tok.encode(f)
    assert tok.decode(toks[1:], bins[1:], f.label).pl == [min(p, tok.max_len) for p in f.pl[: tok.max_packets]]


def test_kv_cache_steps_match_full_forward(demo_flows):
    """Generation's one-token steps with the cache must reproduce the training forward exactly."""
    flows = [f for f in demo_flows[0] if len(f.pl) >= 12][:8]
    tok = Tokenizer(classes=tuple(sorted({f.label for f in flows})), max_packets=12)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(tok.vocab_size, tok.iat_bins, tok.block_size, **TINY)).eval()
    toks, bins = pad([tok.encode(f) for f in flows])
    with torch.no_grad():
        full, full_iat, _ = model(toks, bins)
        past, steps = None, []
        for t in range(toks.shape[1]):
            logits, iat_logits, past = model(toks[:, t : t + 1], bins[:, t : t + 1], past)
            steps.append(logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_reference_config_size():
    tok = Tokenizer(classes=tuple(f"c{i}" for i in range(40)))
    n = Transformer(ModelConfig(tok.vocab_size, tok.iat_bins, tok.block_size)).n_params()
    assert 1_000_000 <= n <= 2_000_000


def test_sampling_filters():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    u = rng.random(2)
    assert (sample(logits, Sampling(top_k=1), u) == [0, 2]).all()
    assert (sample(logits, Sampling(top_p=0.4), u) == [0, 2]).all()
    assert sample(np.array([[-np.inf, 0.0, 0.0]]), Sampling(), np.zeros(1)) == [1]  # never an id of probability 0
    draws = np.array([sample(logits, Sampling(), rng.random(2)) for _ in range(2000)])
    assert abs((draws[:, 0] == 0).mean() - 0.5) < 0.05


@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_flows_keep_their_randomness_when_others_end_early(tiny_run, guidance):
    """Uniforms are dealt per flow, not per live row: rows that end early (and are dropped from the batch) must not
    change the other flows of the same seed, or an engine whose numbers differ slightly would re-deal them all.
    Guided, each flow's row without its class must leave the batch with it, or the others would be guided by the
    wrong rows."""
    model, tok = load_run(tiny_run)
    engine = TorchEngine(model)

    class EndFirstRows(TorchEngine):  # the same model, but the first 16 of 40 flows end after their first packet
        steps = 0

        def step(self, tokens, iats, state):
            logits, iat_logits, state = super().step(tokens, iats, state)
            self.steps += 1
            if self.steps == 2:
                logits[:16], logits[:16, EOS] = -np.inf, 0.0
            return logits, iat_logits, state

    counts, s = {c: 8 for c in tok.classes}, Sampling(guidance=guidance)
    a = [f for batch in generate(engine, tok, counts, s, seed=5) for f in batch]
    b = [f for batch in generate(EndFirstRows(model), tok, counts, s, seed=5) for f in batch]
    assert all(len(f.pl) == 1 for f in b[:16]) and any(len(f.pl) > 1 for f in a[:16])
    assert [(f.pl, f.dir, f.iat) for f in a[16:]] == [(f.pl, f.dir, f.iat) for f in b[16:]]


def test_stratified_draws_give_a_class_its_first_buckets_in_the_model_proportions(tiny_run):
    """Each class's flows in a batch take their uniforms from one shifted Sobol' set (runtime/sampler.py `deal`): of
    64 flows, the count that starts in each length bucket is within 2 of 64 x the model's probability; independent
    draws stray further. Each flow on its own is still uniform: the first draw of one row over many seeds."""
    from scipy.stats import kstest

    from ntg_edge.runtime.sampler import deal

    model, tok = load_run(tiny_run)
    engine, c, h = TorchEngine(model), tok.classes[0], tok.head
    logits = engine.step(np.array([[tok.class_token(c)]]), np.zeros((1, 1), dtype=np.int64), None)[0][0]
    p = np.exp(logits[tok.packet_base : tok.packet_end] - logits[tok.packet_base : tok.packet_end].max())
    expected = 64 * np.bincount(h.head_of[tok.packet_base : tok.packet_end], p / p.sum(), h.size)

    def stray(stratified: bool, seed: int) -> float:
        flows = next(generate(engine, tok, {c: 64}, Sampling(stratified=stratified), seed=seed))
        first = tok.packet_tokens(np.array([f.dir[0] for f in flows]), np.array([f.pl[0] for f in flows]))
        return np.abs(np.bincount(h.head_of[first], minlength=h.size) - expected).max()

    assert max(stray(True, seed) for seed in range(3)) < 2
    assert max(stray(False, seed) for seed in range(3)) >= 2
    rows = np.array([deal(["a"] * 32, 4, 2, np.random.default_rng(s), True)[5, 3] for s in range(500)])
    assert min(kstest(rows[:, i], "uniform").pvalue for i in range(2)) > 1e-3


def test_deal_splits_each_class_evenly_in_every_dimension_it_stratifies():
    """A class of 2**k rows gets one Sobol' net per dimension: floor(u * 2**k) takes every value once, wherever its
    rows are in the batch; a class of more than 1024 rows is dealt in sets of at most 1024, dimensions past 1024 are
    independent, a lone row is dealt too, and every uniform is a float32 below 1."""
    from ntg_edge.runtime.sampler import SOBOL_DIMS, SOBOL_POINTS, deal

    labels = ["a", "b"] * 16 + ["c"] + ["d"] * 2 * SOBOL_POINTS
    steps, streams = 600, 2  # 1,200 dimensions
    u = deal(labels, steps, streams, np.random.default_rng(0), True)
    assert u.shape == (len(labels), steps, streams) and u.dtype == np.float32 and 0 <= u.min() and u.max() < 1
    flat = u.reshape(len(labels), -1)
    rows = {k: np.flatnonzero(np.array(labels) == k) for k in "abd"}
    for dim in (0, 1, 517, SOBOL_DIMS - 1):
        for k in "ab":
            assert sorted(np.floor(flat[rows[k], dim] * 16)) == list(range(16))
        # each set of 1024 puts 16 rows in each of 64 cells (not 1 in each of 1024: float32 may round a value up
        # across so fine a boundary)
        for half in (rows["d"][:SOBOL_POINTS], rows["d"][SOBOL_POINTS:]):
            assert (np.bincount(np.floor(flat[half, dim] * 64).astype(int), minlength=64) == 16).all()
    # past the Sobol' dimensions, 16 independent draws fill 16 cells one each with odds of 16!/16**16, about 1e-6
    assert len(set(np.floor(flat[rows["a"], SOBOL_DIMS + 5] * 16))) < 16


def test_metrics_floor_and_ceiling(demo_split):
    train_flows, test_flows = demo_split
    same = metrics.fidelity(test_flows, test_flows, train=test_flows)
    assert same["1gram_jsd"] == same["2gram_jsd"] == same["markov_jsd"] == same["pkt_count_jsd"] == 0
    assert same["uniq_align"] == 1 and same["leakage"] == 1 and same["copy_rate"] == 1
    # every class judged against another class's flows: clearly worse than real train vs real test
    labels = sorted({f.label for f in test_flows})
    swap = {a: b for a, b in zip(labels, labels[1:] + labels[:1])}
    wrong = [Flow(label=swap[f.label], pl=f.pl, dir=f.dir, iat=f.iat) for f in train_flows]
    floor, bad = metrics.fidelity(test_flows, train_flows), metrics.fidelity(test_flows, wrong)
    for k in ("1gram_jsd", "2gram_jsd", "markov_jsd"):
        assert bad[k] > floor[k]
    assert metrics.train_test_f1(wrong, test_flows) < metrics.train_test_f1(train_flows, test_flows)


def test_copy_rate_as_ignores_the_class_mix_of_the_synthetic_set(demo_split):
    """The checkpoint rule's copy rate must not move when one class is drawn more often than in the real flows it is
    compared with: the plain rate does, towards that class's own rate."""
    train_flows, test_flows = demo_split
    groups = metrics.by_class(test_flows)
    rates = {c: metrics.copy_rate(train_flows, fs) for c, fs in groups.items()}
    odd = max(rates, key=lambda c: abs(rates[c] - metrics.copy_rate(train_flows, test_flows)))
    skewed = test_flows + groups[odd] * 5
    natural = metrics.copy_rate(train_flows, test_flows)
    assert metrics.copy_rate_as(train_flows, skewed, test_flows) == pytest.approx(natural)
    assert abs(metrics.copy_rate(train_flows, skewed) - natural) > 0.02


def test_training_writes_a_pickle_free_run(tiny_run):
    import yaml

    assert sorted(p.name for p in tiny_run.iterdir()) == ["config.yaml", "history.yaml", "manifest.json",
                                                           "model.safetensors"]
    history = yaml.safe_load((tiny_run / "history.yaml").read_text())
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    sel = cfg["selected"]
    assert sel in history and (sel["val_copy_rate"] <= cfg["natural_copy_rate"] or sel == history[-1])


def _rows(*scores):
    """Made-up epochs: (val TSTR, copy rate, val loss) each."""
    return [{"epoch": i + 1, "val_tstr": t, "val_copy_rate": c, "val_loss": v} for i, (t, c, v) in enumerate(scores)]


def test_checkpoint_rule_keeps_the_best_eligible_epoch():
    rule = CheckpointRule(natural_copy_rate=0.5, patience=10, window=1)
    rows = _rows((0.6, 0.2, 3.0), (0.8, 0.7, 2.9), (0.7, 0.5, 2.8), (0.75, 0.4, 2.7), (0.74, 0.1, 2.6))
    kept = [rule.update(r)[0] for r in rows]
    # epoch 2 has the best TSTR but copies more than the natural rate; equal to the natural rate is allowed
    assert kept == [True, False, True, True, False] and rule.best["epoch"] == 4


def test_checkpoint_rule_stops_after_patience_without_progress():
    rule = CheckpointRule(natural_copy_rate=0.5, patience=2, window=1)
    rows = _rows((0.6, 0.1, 3.0), (0.5, 0.1, 2.5), (0.5, 0.1, 2.6), (0.5, 0.1, 2.7), (0.9, 0.1, 1.0))
    stops = [rule.update(r)[1] for r in rows[:4]]
    # epoch 2 lowers the loss (progress), epochs 3 and 4 neither lower it nor beat TSTR 0.6
    assert stops == [False, False, False, True] and rule.best["epoch"] == 1
    never = CheckpointRule(natural_copy_rate=0.0, patience=5, window=1)
    assert not any(never.update(r)[0] for r in _rows((0.9, 0.3, 1.0), (0.95, 0.2, 0.9))) and never.best is None


def test_checkpoint_rule_scores_an_epoch_by_its_window():
    """With a window of 3 a lone spike no longer wins: epoch 3's window (0.6, 0.9, 0.6) averages 0.7, below epoch 6's
    run of 0.8s; epochs 1 and 2, without a full window, are scored but never kept, not even the 0.9 of epoch 1."""
    rows = _rows((0.6, 0.1, 3.0), (0.9, 0.1, 2.9), (0.6, 0.1, 2.8), (0.8, 0.1, 2.7), (0.8, 0.1, 2.6), (0.8, 0.1, 2.5))
    plain, windowed = CheckpointRule(0.5, patience=10, window=1), CheckpointRule(0.5, patience=10, window=3)
    for r in rows:
        plain.update(dict(r))
        windowed.update(r)
    assert plain.best["epoch"] == 2
    assert windowed.best["epoch"] == 6
    assert [r["val_score"] for r in rows[:3]] == pytest.approx([0.6, 0.75, 0.7])
    assert [r["val_window"] for r in rows[:3]] == [1, 2, 3]
    early = CheckpointRule(0.5, patience=10, window=3)
    kept = [early.update(r)[0] for r in _rows((0.9, 0.1, 3.0), (0.6, 0.1, 2.9), (0.6, 0.1, 2.8), (1.0, 0.1, 2.7))]
    assert kept == [False, False, True, True] and early.best["epoch"] == 4


def test_generation_is_valid_and_seeded(tiny_run):
    model, tok = load_run(tiny_run)
    counts = {c: 30 for c in tok.classes}
    a = [f for b in generate(TorchEngine(model), tok, counts, batch_size=64, seed=7) for f in b]
    b = [f for b in generate(TorchEngine(model), tok, counts, batch_size=64, seed=7) for f in b]
    c = [f for b in generate(TorchEngine(model), tok, counts, batch_size=64, seed=8) for f in b]
    assert Counter(f.label for f in a) == Counter(counts)
    assert [f.signed() for f in a] == [f.signed() for f in b]
    assert [f.signed() for f in a] != [f.signed() for f in c]
    for f in a:
        assert 1 <= len(f.pl) <= tok.max_packets and len(f.pl) == len(f.dir) == len(f.iat)
        assert all(0 <= p <= tok.max_len for p in f.pl) and set(f.dir) <= {1, -1}
        assert f.iat[0] == 0 and min(f.iat) >= 0


def test_fixed_length_generation(tiny_run):
    model, tok = load_run(tiny_run)
    flows = next(generate(TorchEngine(model), tok, {tok.classes[0]: 16}, length=10))
    assert {len(f.pl) for f in flows} == {10}


def test_cli_generate_and_evaluate(tiny_run, demo_split, tmp_path):
    out, small = tiny_run, demo_split
    train_path, test_path = tmp_path / "train.parquet", tmp_path / "test.parquet"
    write_flows(train_path, small[0])
    write_flows(test_path, small[1])
    r = CliRunner().invoke(main, ["generate", str(out), "--counts-from", str(train_path), "--seed", "3",
                                  "--out", str(tmp_path / "syn.parquet")])
    assert r.exit_code == 0, r.output
    syn = read_flows(tmp_path / "syn.parquet")
    assert Counter(f.label for f in syn) == Counter(f.label for f in small[0])
    r = CliRunner().invoke(main, ["evaluate", "--real-test", str(test_path), "--synthetic",
                                  str(tmp_path / "syn.parquet"), "--real-train", str(train_path),
                                  "--json", str(tmp_path / "rep.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert set(rep) == {"draws", "synthetic", "synthetic_sd", "real_floor", "ratio"} and rep["draws"] == 1
    assert 0 <= rep["synthetic"]["tstr_f1"] <= 1 and "markov_jsd" in r.output and "±" not in r.output

    # a second draw: the report becomes mean ± sd over draws; with two draws the sd is half their difference
    r = CliRunner().invoke(main, ["generate", str(out), "--counts-from", str(train_path), "--seed", "4",
                                  "--out", str(tmp_path / "syn2.parquet")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["evaluate", "--real-test", str(test_path), "--synthetic",
                                  str(tmp_path / "syn.parquet"), "--synthetic", str(tmp_path / "syn2.parquet"),
                                  "--real-train", str(train_path),
                                  "--json", str(tmp_path / "rep2.json")])
    assert r.exit_code == 0, r.output
    rep2 = json.loads((tmp_path / "rep2.json").read_text())
    assert rep2["draws"] == 2 and "±" in r.output and "over 2 draws" in r.output
    one = rep["synthetic"]["markov_jsd"]
    two = 2 * rep2["synthetic"]["markov_jsd"] - one  # the second draw's own value
    assert abs(rep2["synthetic_sd"]["markov_jsd"] - abs(one - two) / 2) < 1e-9


def test_cli_rejects_bad_input(tmp_path):
    bad = tmp_path / "flows.parquet"
    bad.write_text("not parquet")
    r = CliRunner().invoke(main, ["evaluate", "--real-test", str(bad), "--synthetic", str(bad)])
    assert r.exit_code != 0 and str(bad) in r.output and "Parquet" in r.output
    r = CliRunner().invoke(main, ["generate", str(tmp_path), "--out", str(tmp_path / "x.parquet")])
    assert r.exit_code != 0 and "neither a training run nor a bundle" in r.output


def test_weight_average_is_the_decay_weighted_mean_of_the_iterates():
    """The kept weights: iterates weighted by decay**age and normalised, with nothing left of the initial weights."""
    from torch.optim.swa_utils import AveragedModel

    m = torch.nn.Linear(3, 2, bias=False)
    avg = AveragedModel(m, avg_fn=ema_update(0.9))
    seen = []
    for t in range(6):
        with torch.no_grad():
            m.weight.normal_()
        seen.append(m.weight.detach().clone())
        avg.update_parameters(m)
    w = torch.tensor([0.9 ** (5 - i) for i in range(6)])
    want = sum(wi * x for wi, x in zip(w, seen)) / w.sum()
    assert torch.allclose(avg.module.weight, want, atol=1e-6)


def test_tail_weight_zero_ignores_packets_after_the_head(demo_split):
    """With tail_weight 0 the loss must not see what follows the first head_packets packets; with 1 it must."""
    from ntg_edge.runtime.settings import TrainConfig
    from ntg_edge.train.data import encode_all
    from ntg_edge.train.train import loss_fn

    flows = [f for f in demo_split[0] if len(f.pl) > 12][:16]
    tok = Tokenizer(classes=tuple(sorted({f.label for f in demo_split[0]})))
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, iat_bins=tok.iat_bins, block_size=tok.block_size,
                                    **TINY)).eval()
    toks, bins = pad(encode_all(flows, tok))
    later = toks.clone()
    tail = later[:, 12:]  # inputs from packet 11 on, targets from packet 11 on: all past the head of 10
    later[:, 12:] = torch.where(tail >= tok.packet_base, tok.packet_base + (tail - tok.packet_base + 7) % 3002, tail)
    head_only = TrainConfig(head_packets=10, tail_weight=0.0)
    with torch.no_grad():
        assert torch.isclose(loss_fn(model, toks, bins, tok, head_only), loss_fn(model, later, bins, tok, head_only))
        assert not torch.isclose(loss_fn(model, toks, bins, tok), loss_fn(model, later, bins, tok))


def test_shared_lengths_lift_unseen_neighbours_and_save_a_plain_model(demo_split):
    """Training on a frequent length must raise an unseen length in its 4-byte bucket above an unseen length far away
    only when lengths are shared; the saved state must load into a plain model that gives the same logits."""
    from ntg_edge.train.data import encode_all, targets
    from ntg_edge.train.lengths import plain_state, share_lengths
    from ntg_edge.train.train import loss_fn

    flows = [f for f in demo_split[0] if f.pl][:64]
    tok = Tokenizer(classes=tuple(sorted({f.label for f in demo_split[0]})))
    toks, bins = pad(encode_all(flows, tok))
    y, _ = targets(toks, bins, tok)
    seen = Counter(y[y >= tok.packet_base].tolist())
    common = max(seen, key=seen.get)
    used = set(toks.flatten().tolist())
    near = next(t for t in range(common - common % 4, common - common % 4 + 4) if t not in used)
    far = next(t for t in range(common - 900, common - 600) if t not in used
               and tok.unpack(np.array(t))[0] == tok.unpack(np.array(common))[0])
    gaps = {}
    for scales in (0, 2):
        torch.manual_seed(0)
        model = Transformer(ModelConfig(tok.vocab_size, tok.iat_bins, tok.block_size, **{**TINY, "dropout": 0.0}))
        share_lengths(model, tok, scales)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(10):
            loss = loss_fn(model, toks, bins, tok)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(toks[:, :-1], bins[:, :-1])[0][y == common]  # where the next packet is the common length
            gaps[scales] = (logits[:, near] - logits[:, far]).mean().item()
            plain = Transformer(model.cfg).eval()
            plain.load_state_dict(plain_state(model))
            assert torch.allclose(plain(toks, bins)[0], model(toks, bins)[0], atol=1e-5)
    assert gaps[2] > gaps[0] + 2.0, gaps


def test_refit_trains_on_every_flow_for_the_chosen_epochs(demo_split, tmp_path):
    """--refit keeps the checkpoint rule's epoch count but a model trained on the validation slice too: the run says
    so, and its weights are not the held-out model's."""
    from ntg_edge.runtime.manifest import read_yaml
    from ntg_edge.runtime.settings import TrainConfig
    from ntg_edge.train.train import train

    flows = demo_split[0]
    runs = {}
    for refit in (False, True):
        runs[refit] = tmp_path / f"refit-{refit}"
        summary = train(flows, runs[refit], TINY, TrainConfig(epochs=4, val_flows_per_class=10, max_packets=16,
                                                              refit=refit), log=lambda *_: None)
    cfg = read_yaml(runs[True] / "config.yaml")
    assert cfg["refit"]["flows"] == len([f for f in flows if f.pl])
    assert cfg["refit"]["epochs"] == cfg["selected"]["epoch"] == summary["selected"]["epoch"]
    assert 0 <= cfg["refit"]["copy_rate"] <= 1
    held_out, refitted = (load_run(runs[r])[0].tok_emb.weight for r in (False, True))
    assert held_out.shape == refitted.shape and not torch.equal(held_out, refitted)


def test_other_flows_are_learnt_with_the_class_hidden(demo_split, tmp_path):
    """A class's flows given as other flows (not a training class) must be learnt under the hidden class: the model
    scores held-out flows of that class, class hidden, better than a twin trained without them; flows of a training
    class are refused."""
    from ntg_edge.runtime.settings import TrainConfig
    from ntg_edge.train.data import batches
    from ntg_edge.train.train import loss_fn, train

    flows = [f for f in demo_split[0] if f.label != "ssh"]
    other = [f for f in demo_split[0] if f.label == "ssh"]
    held_out = [f for f in demo_split[1] if f.label == "ssh"]
    config = TrainConfig(epochs=3, val_flows_per_class=10, max_packets=16, other_share=0.3)
    losses = {}
    for given in (False, True):
        run = tmp_path / f"other-{given}"
        train(flows, run, TINY, config, log=lambda *_: None, other=other if given else [])
        model, tok = load_run(run)
        assert tok.any_class == given and "ssh" not in tok.classes
        seqs = [tok.encode(f, hide_class=True) for f in held_out]
        with torch.no_grad():
            losses[given] = np.mean([loss_fn(model.eval(), a, b, tok).item() for a, b in batches(seqs, 64)])
    assert losses[True] < losses[False] - 0.5, losses
    with pytest.raises(ValueError, match=r"other flows: 3 are of the training classes \(dns\)"):
        train(flows, tmp_path / "refused", TINY, config, log=lambda *_: None,
              other=other + [f for f in flows if f.label == "dns"][:3])
    assert not (tmp_path / "refused").exists()
