"""The model and training settings: the one place their defaults, help and valid ranges live (no torch here, so the
command line can declare its options from them on the edge install)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .knobs import SEED_MAX, check, knob
from .tokenizer import Tokenizer

# The sizes a model takes from its tokenizer, with the bounds a config read from disk must respect: a damaged
# config.yaml must be refused with a line, not ask torch for a negative or a terabyte-sized table.
DERIVED = {"vocab_size": 1 << 20, "iat_bins": 4096, "block_size": 1 << 16}


def check_derived(cfg: object) -> None:
    for name, most in DERIVED.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ValueError(f"{name}: expected a whole number 1 .. {most:,}, got {value!r}")
    head = cfg.head_size
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head <= cfg.vocab_size:
        raise ValueError(f"head_size: expected a whole number 0 .. vocab_size ({cfg.vocab_size}), got {head!r}")


@dataclass
class ModelConfig:
    """A LLaMA-style decoder. The reference study's LLaMA: dim 160, SwiGLU width 320, 4 layers, 8 heads."""

    vocab_size: int
    iat_bins: int
    block_size: int
    head_size: int = 0  # outputs of a factorised token head (train/lengths.py); 0 = one per id
    dim: int = knob(160, "Model width (embedding and residual stream).", lo=2, hi=8192)
    ffn_dim: int = knob(320, "SwiGLU width (the feed-forward's intermediate size).", lo=1, hi=65536)
    n_layers: int = knob(4, "Decoder layers.", lo=1, hi=256)
    n_heads: int = knob(8, "Attention heads; dim / n_heads must be an even whole number (rotary pairs).", lo=1,
                        hi=256)
    # heavy on purpose: the corpus is small and a generator that copies training flows is worthless
    dropout: float = knob(0.3, "Dropout probability.", lo=0, hi=1, hi_open=True)
    rope_base: float = knob(10000.0, "Rotary position base.", lo=1)
    norm_eps: float = knob(1e-5, "RMSNorm epsilon.", lo=0, lo_open=True)

    def __post_init__(self) -> None:
        check(self)
        check_derived(self)
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} / n_heads {self.n_heads}: the head width must be an even whole number")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MambaConfig:
    """A Mamba (selective state space) stack. The reference study's Mamba: hidden 72, intermediate 144, 4 layers."""

    vocab_size: int
    iat_bins: int
    block_size: int
    head_size: int = 0  # outputs of a factorised token head (train/lengths.py); 0 = one per id
    dim: int = knob(72, "Model width (embedding and residual stream).", lo=2, hi=8192)
    d_inner: int = knob(144, "Mamba's intermediate width (the mixer's channels; Mamba's expand x dim).", lo=1,
                        hi=65536)
    n_layers: int = knob(4, "Mamba layers.", lo=1, hi=256)
    d_state: int = knob(16, "Mamba's state size per channel (N).", lo=1, hi=1024)
    d_conv: int = knob(4, "Width of Mamba's causal depthwise convolution.", lo=2, hi=64)
    dt_rank: int = knob(0, "Rank of Mamba's step-size projection (0 = ceil(dim / 16), Mamba's default).", lo=0,
                        hi=8192)
    # heavy on purpose, as for the Transformer: the corpus is small
    dropout: float = knob(0.3, "Dropout probability.", lo=0, hi=1, hi_open=True)
    norm_eps: float = knob(1e-5, "RMSNorm epsilon.", lo=0, lo_open=True)

    def __post_init__(self) -> None:
        check(self)
        check_derived(self)

    @property
    def rank(self) -> int:
        return self.dt_rank or -(-self.dim // 16)

    def to_dict(self) -> dict:
        return asdict(self)


# --model NAME -> its config. Each declares its own options; shared names (dim, n_layers, ...) mean the same thing.
MODEL_CONFIGS = {"llama": ModelConfig, "mamba": MambaConfig}


@dataclass(frozen=True)
class SmoteConfig:
    packets: int = knob(64, "Packets per flow in SMOTE's vectors (the flows' first N; ingest keeps 64).", lo=1,
                        hi=4096)
    k_neighbors: int = knob(5, "SMOTE's neighbours per flow (fewer in a class with fewer flows).", lo=1, hi=1000)
    jitter: float = knob(0.1, "A class of one flow: its copies' inter-arrival times are multiplied by "
                              "exp(N(0, jitter)).", lo=0, hi=10)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class FastRetransmitConfig:
    repeat_share: float = knob(0.5, "Share of synthetic flows with one packet retransmitted (the others get one "
                                     "packet delayed).", lo=0, hi=1)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class CvaeConfig:
    packets: int = knob(20, "Packets per flow the CVAE models (the flows' first N).", lo=1, hi=1024)
    hidden: int = knob(500, "First hidden layer of the encoder (the decoder's last).", lo=1, hi=65536)
    hidden2: int = knob(250, "Second hidden layer of the encoder (the decoder's first).", lo=1, hi=65536)
    latent: int = knob(20, "Latent dimensions.", lo=1, hi=4096)
    length_buckets: int = knob(64, "Length buckets (quantiles of the training lengths).", lo=1,
                               hi=Tokenizer.max_len + 1)
    epochs: int = knob(200, "Epochs at budget 1.0.", lo=1)
    batch_size: int = knob(64, "Flows per batch.", lo=1)
    lr: float = knob(1e-3, "Adam learning rate.", lo=0, lo_open=True)
    kl_warmup: float = knob(0.2, "Share of the steps over which the KL weight ramps from 0 to 1 (against posterior "
                                 "collapse).", lo=0, hi=1)
    iat_sigma: float = knob(0.05, "Standard deviation of the decoder's Gaussian over the scaled log-iat.", lo=0,
                            lo_open=True)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class GasfConfig:
    packets: int = knob(16, "Packets per flow (the image is N x N; a multiple of 8 for the U-Net).", lo=8, hi=256)
    width: int = knob(32, "Channels of the U-Net's first level (then 2x and 4x); a multiple of 8.", lo=8, hi=1024)
    diffusion_steps: int = knob(200, "DDPM noise levels (cosine schedule).", lo=2, hi=10000)
    sample_steps: int = knob(25, "DDIM steps when sampling.", lo=1, hi=10000)
    epochs: int = knob(35, "Epochs at budget 1.0.", lo=1)
    batch_size: int = knob(32, "Images per batch.", lo=1)
    lr: float = knob(2e-3, "Adam's peak learning rate (cosine decay to 0).", lo=0, lo_open=True)

    def __post_init__(self) -> None:
        check(self)
        if self.packets % 8 or self.width % 8:
            raise ValueError(f"packets {self.packets}, width {self.width}: expected multiples of 8")


# the reference study's baselines (train/synthesizer.py): --model NAME -> its settings
BASELINE_CONFIGS: dict[str, type] = {"cvae": CvaeConfig, "gasf": GasfConfig, "smote": SmoteConfig,
                                     "fast_retransmit": FastRetransmitConfig}
MODELS = (*MODEL_CONFIGS, *BASELINE_CONFIGS)


@dataclass
class TrainConfig:
    epochs: int = knob(80, "Most epochs; training stops earlier when neither validation loss nor TSTR improves.", lo=1)
    batch_size: int = knob(64, "Flows per training batch.", lo=1)
    lr: float = knob(2e-3, "Peak learning rate (AdamW, warm-up then cosine).", lo=0, lo_open=True)
    min_lr: float = knob(2e-4, "Final learning rate of the cosine schedule.", lo=0)
    warmup: float = knob(0.03, "Share of all steps spent warming up.", lo=0, hi=1)
    weight_decay: float = knob(0.1, "AdamW weight decay on matrices.", lo=0)
    patience: int = knob(15, "Epochs without improvement before stopping.", lo=1)
    val_fraction: float = knob(0.15, "Share of the training flows held out for the checkpoint rule.", lo=0, hi=1,
                               lo_open=True, hi_open=True)
    val_flows_per_class: int = knob(60, "Synthetic flows per class generated for validation TSTR.", lo=1)
    # Validation TSTR jumps between epochs more than the weight average changes (ema_horizon): a lone spike would
    # win the rule and, through patience, end training early (docs/benchmarks.md#checkpoint-window).
    val_window: int = knob(3, "Epochs whose validation TSTR the checkpoint rule averages (the epoch itself and those "
                              "before it).", lo=1)
    # Small classes are where a generator fails first, and macro-F1 weighs them like large ones.
    balance: float = knob(0.5, "Class balance of training draws: weight n**-balance for a class of n flows "
                               "(0 = as they come, 1 = every class equally).", lo=0, hi=1)
    # A snapshot of the raw weights leans towards the few flows of each class it saw last: on 20-flow classes that
    # turns a 50/50 choice of first packet into 95/5. A fixed decay would lag far behind a short run, hence a share.
    ema_horizon: float = knob(0.1, "Horizon of the weight average, as a share of all training steps (0 = raw "
                                   "weights).", lo=0, hi=1)
    max_packets: int = knob(64, "Packets per flow the model sees.", lo=1)
    # The first packets are what a classifier of the flow sees first (the benchmark's forest sees 20); long flows are
    # kept, but need not take the model's capacity from them.
    head_packets: int = knob(20, "Packets that weigh fully in the loss (see --tail-weight).", lo=1)
    tail_weight: float = knob(1.0, "Loss weight of packets after the first --head-packets (1 = every packet alike).",
                              lo=0, hi=1)
    # Most exact lengths occur once or never in a small corpus (train/lengths.py).
    length_scales: int = knob(0, "Coarse scales whose buckets of 4, 16, 64 ... bytes neighbouring payload lengths "
                                 "share while training (0 = each length on its own).", lo=0, hi=5)
    # One output per exact length learns each of the ~1,000 lengths a direction takes from its few occurrences
    # (runtime/lengths.py; 128 against the exact head and 512: docs/benchmarks.md).
    length_head: int = knob(128, "Factorised packet head: the model scores (direction, length bucket), with this "
                                 "many quantile buckets of the training lengths per direction, and the exact length "
                                 "is drawn from the class's training lengths inside the bucket (0 = one output per "
                                 "exact length).", lo=0, hi=Tokenizer.max_len + 1)
    # Generated 64-packet flows ended before packet 10 in 55% of flows against 41% of real ones (runtime/tokenizer.py).
    length_token: bool = knob(False, "Each flow starts with a token for its length bucket, drawn before its first "
                                     "packet.")
    # The validation slice costs a 20-flow class 3 of its flows; the epoch count it chose carries over.
    refit: bool = knob(False, "After choosing the epoch, train again on every flow (validation slice included) for "
                              "that many epochs and keep that model.")
    # Classifier-free guidance (runtime/sampler.py Sampling.guidance) needs the model without its class as well.
    class_dropout: float = knob(0.0, "Share of training flows whose class token is hidden (<PAD>), so that the model "
                                     "also learns flows of any class, for generate --guidance.", lo=0, hi=1, hi_open=True)
    # Flows of classes the split left out (split's other.parquet) teach traffic in general: handshakes, size
    # patterns, timing, which a 20-flow class cannot teach alone (docs/benchmarks.md#other-flows).
    other_share: float = knob(0.2, "Share of training draws taken from --other-flows (learnt with the class hidden); "
                                   "the training flows keep their draws per epoch.", lo=0, hi=1, hi_open=True)
    seed: int = knob(0, "Random seed (data order, initialisation, validation draws).", lo=0, hi=SEED_MAX)
    device: str = knob("auto", "Where to train.", choices=("auto", "cpu", "cuda"))

    def __post_init__(self) -> None:
        check(self)
        if self.length_scales and self.length_head:
            raise ValueError("length_scales, length_head: both share lengths between neighbours; choose one "
                             "(--length-head 0 turns the factorised head off)")
