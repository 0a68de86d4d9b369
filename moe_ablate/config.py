"""Typed configuration: model, training and data settings, named presets, validation.

One ``ExperimentConfig`` fully describes one training run. It round-trips through JSON exactly
(``to_dict`` / ``from_dict``), so a result file always carries the config that produced it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import PurePath
from typing import Any, Literal, get_args

from .errors import UserError

# Every closed set of choices is declared once, here, as a Literal; validation and the CLI's help
# read them from these types (``choices(ModelName)``), and the model registry is tested against it.
ModelName = Literal["moe", "deepseek_mlp", "deepseek_glm4_moe"]
Dispatch = Literal["auto", "grouped", "sorted", "masked"]  # masked = the plain reference loop
Amp = Literal["auto", "off", "bf16", "fp16"]
TxtSplit = Literal["paragraph", "line", "file"]
# torch.optim.Muon's adjust_lr_fn: "original" scales the update by sqrt(max(1, rows/cols)) (Keller Jordan);
# "match_rms_adamw" by 0.2 * sqrt(max(rows, cols)) so its RMS matches AdamW's (Moonlight, 2025), which lets
# Muon and AdamW share one learning rate
MuonAdjustLR = Literal["original", "match_rms_adamw"]
# the LR schedule after warmup: cosine to min_lr_frac; wsd = warmup-stable-decay (constant, then a decay over the
# last decay_frac of the run); constant
Schedule = Literal["cosine", "wsd", "constant"]
DecayShape = Literal["1-sqrt", "linear"]  # WSD's decay: 1 - sqrt(progress) (Hägele et al. 2024) or linear
DATA_FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


def choices(literal) -> tuple[str, ...]:
    """The values of a ``Literal`` type, e.g. ``choices(ModelName)``."""
    return get_args(literal)


@dataclass
class ModelConfig:
    """Architecture. ``name`` selects a model from the registry (``moe_ablate.models``)."""

    name: ModelName = "moe"
    vocab_size: int = 4096  # overwritten by the tokenizer's real size when data is prepared
    d_model: int = 384  # hidden width (the residual stream)
    n_heads: int = 8  # attention heads
    n_layers: int = 6  # transformer blocks
    d_ff: int = 1536  # expert (or dense MLP) hidden width
    num_experts: int = 8
    top_k: int = 2
    max_seq_len: int = 256  # the longest sequence the model takes (RoPE tables)
    dropout: float = 0.0  # dropout probability (0 = none, as in most LM pretraining)
    rope_theta: float = 10000.0  # RoPE base frequency
    aux_loss_weight: float = 0.01  # load-balancing loss weight (0 disables)
    router_z_loss_weight: float = 0.0  # ST-MoE router z-loss weight, mean(logsumexp(logits)^2) (0 disables)
    active_d_ff: int = 0  # > 0: d_ff = active_d_ff // top_k, so top-k and granularity keep active compute equal
    router_noise: float = 0.1  # std of logit noise added in training (moe model)
    moe_dispatch: Dispatch = "auto"  # expert dispatch: auto = grouped_mm where the device supports it, else sorted
    # DeepSeek-V3 multi-head latent attention (deepseek_* models)
    q_lora_rank: int = 128  # 0 = no query compression
    kv_lora_rank: int = 128  # MLA key/value compression rank
    qk_rope_head_dim: int = 32  # MLA: per-head query/key dims that carry RoPE
    qk_nope_head_dim: int = 32  # MLA: per-head query/key dims without RoPE
    v_head_dim: int = 64  # MLA: per-head value dim
    # GLM4-MoE feed-forward (deepseek_glm4_moe)
    n_shared_experts: int = 1  # GLM4-MoE: experts every token uses besides the routed ones
    routed_scaling_factor: float = 1.0  # GLM4-MoE: scale of the routed experts' output
    bias_update_rate: float = 0.001  # gamma of the aux-loss-free bias update (0 disables)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def expert_d_ff(self) -> int:
        """Hidden width of one routed expert: ``d_ff``, or ``active_d_ff // top_k`` when that is set."""
        return self.active_d_ff // self.top_k if self.active_d_ff and self.top_k > 0 else self.d_ff


@dataclass
class TrainConfig:
    """Optimisation and schedule. Steps count optimizer steps, not micro-batches."""

    steps: int = 50
    batch_size: int = 16
    seq_len: int = 256
    grad_accum: int = 1
    muon_lr: float = 0.01
    adamw_lr_ratio: float = 0.1  # AdamW lr = muon_lr * ratio
    muon_adjust_lr: MuonAdjustLR = "original"  # Muon's per-matrix LR scaling (torch.optim.Muon's adjust_lr_fn)
    momentum: float = 0.95
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    schedule: Schedule = "cosine"
    warmup_frac: float = 0.05  # linear warmup over this fraction of the steps
    warmup_steps: int = 0  # > 0: warm up over this many steps instead of warmup_frac (WSD horizons share it)
    min_lr_frac: float = 0.1  # the schedule decays to this fraction of the peak (cosine, wsd)
    decay_frac: float = 0.2  # wsd: the decay covers this last fraction of the run (Hägele et al.: ~20%)
    decay_shape: DecayShape = "1-sqrt"
    eval_every: int = 10
    eval_batches: int = 8
    eval_seq_len: int = 0  # validation window length (0 = seq_len); fix it to compare different seq_len
    eval_batch_size: int = 0  # validation batch size (0 = batch_size)
    patience: int = 0  # early stopping patience in evaluations (0 = off)
    min_delta: float = 0.0  # early stopping: the improvement that resets patience
    log_every: int = 10  # training loss logged (one host sync) every N steps
    checkpoint_every: int = 0  # 0 = only the final model
    hellaswag_every: int = 0  # score HellaSwag every N steps (0 = off; needs hellaswag_source)
    hellaswag_source: str = ""  # JSONL file or hf:Rowan/hellaswag, scored every hellaswag_every steps
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Amp = "auto"  # CUDA only; CPU always runs fp32
    compile: bool = False  # torch.compile the model (CUDA only)


@dataclass
class DataConfig:
    """Where tokens come from. ``source``: builtin | path to .txt/.jsonl/.parquet or folder | hf:NAME[:CONFIG]."""

    source: str = "builtin"
    tokenizer: str = "bpe"  # bpe (trained locally, cached) | hf:NAME
    vocab_size: int = 4096  # for the local BPE
    # Caps are opt-in: 0 = everything. hf: sources default to the seeds' 3000 documents x 3000
    # characters and 1M tokens. A preset never caps a user's data: it sizes only the generator.
    builtin_documents: int = 3000  # how many documents the builtin generator makes
    num_documents: int = 0
    max_tokens: int = 0
    max_doc_chars: int = 0
    txt_split: TxtSplit = "paragraph"  # .txt files: one document per paragraph | line | the whole file
    val_fraction: float = 0.1  # the last fraction of the text validates (never trained on)
    seed: int = 1234  # the builtin corpus generator's seed
    cache_dir: str = ""  # tokenizer and token cache; "" = $MOE_ABLATE_CACHE, else the user cache folder


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        return cls(
            model=_build(ModelConfig, d.get("model", {}), "model"),
            train=_build(TrainConfig, d.get("train", {}), "train"),
            data=_build(DataConfig, d.get("data", {}), "data"),
        )


def _build(cls, values: dict[str, Any], section: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"unknown {section} setting(s): {', '.join(unknown)}")
    obj = cls()
    for k, v in values.items():
        setattr(obj, k, _coerce(known[k], v, section))
    return obj


def _coerce(f: dataclasses.Field, v: Any, section: str) -> Any:
    """Coerce TOML/JSON/CLI values to the field's type, with a clear error."""
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    if typ in _LITERALS:  # a Literal alias: a string, checked against its values by validate()
        typ = "str"
    try:
        if typ == "int":
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            return int(v)
        if typ == "float":
            if isinstance(v, bool):
                raise ValueError
            return float(v)
        if typ == "bool":
            if isinstance(v, str):
                if v.lower() in ("1", "true", "yes", "on"):
                    return True
                if v.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(v)
        if typ == "str":
            if not isinstance(v, str):
                raise ValueError
            return v
    except (TypeError, ValueError):
        raise UserError(f"{section}.{f.name} must be {typ}, got {v!r}") from None
    return v


_LITERALS = {"ModelName", "Dispatch", "Amp", "TxtSplit", "MuonAdjustLR", "Schedule", "DecayShape"}


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Return a copy with dotted overrides applied, e.g. {"train.muon_lr": 0.03}."""
    d = cfg.to_dict()
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in d or name not in d[section]:
            import difflib

            known = [f"{s}.{n}" for s, fields_ in d.items() for n in fields_]
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            raise UserError(f"unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        d[section][name] = value
    return ExperimentConfig.from_dict(d)


# ---------------------------------------------------------------- presets
# A preset sizes the model and the run; it does not pick the architecture (``--model`` does).
PRESETS: dict[str, dict[str, Any]] = {
    # The seeds' ablation model: 384d, 6 layers, 8 heads, d_ff 1536, 8 experts top-2, seq 256, batch 16.
    "seed": {
        "model.d_model": 384, "model.n_heads": 8, "model.n_layers": 6, "model.d_ff": 1536,
        "model.num_experts": 8, "model.top_k": 2, "model.max_seq_len": 256,
        "model.q_lora_rank": 128, "model.kv_lora_rank": 128,
        "train.seq_len": 256, "train.batch_size": 16,
    },
    # Small enough that 100 steps take well under a minute on 2 CPU cores.
    "tiny": {
        "model.d_model": 128, "model.n_heads": 4, "model.n_layers": 2, "model.d_ff": 512,
        "model.num_experts": 8, "model.top_k": 2, "model.max_seq_len": 128,
        "model.q_lora_rank": 64, "model.kv_lora_rank": 64, "model.qk_rope_head_dim": 16,
        "model.qk_nope_head_dim": 16, "model.v_head_dim": 32,
        "train.seq_len": 128, "train.batch_size": 8, "train.steps": 100, "train.eval_every": 20,
        "train.eval_batches": 4,
        "data.vocab_size": 2048, "data.builtin_documents": 1500,
    },
    # Experiment 9 (DeepSeek attention + dense MLP): hidden 512, 12 layers, 8 heads, intermediate 2048.
    "exp9": {
        "model.d_model": 512, "model.n_heads": 8, "model.n_layers": 12, "model.d_ff": 2048,
        "model.max_seq_len": 256, "model.q_lora_rank": 128, "model.kv_lora_rank": 128,
        "model.qk_rope_head_dim": 32, "model.qk_nope_head_dim": 32, "model.v_head_dim": 64,
        "train.seq_len": 256, "train.batch_size": 16,
    },
    # Experiment 3 (DeepSeek attention + GLM4 MoE): hidden 512, 12 layers, 8 heads, expert width 1024.
    "exp3": {
        "model.d_model": 512, "model.n_heads": 8, "model.n_layers": 12, "model.d_ff": 1024,
        "model.num_experts": 8, "model.top_k": 2, "model.max_seq_len": 256,
        "model.q_lora_rank": 128, "model.kv_lora_rank": 128,
        "model.qk_rope_head_dim": 32, "model.qk_nope_head_dim": 32, "model.v_head_dim": 64,
        "train.seq_len": 256, "train.batch_size": 16,
    },
}


def preset_config(name: str, model: str | None = None) -> ExperimentConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r} (choose from: {', '.join(PRESETS)})")
    cfg = apply_overrides(ExperimentConfig(), PRESETS[name])
    if model is not None:
        cfg.model.name = model
    return cfg


# ---------------------------------------------------------------- validation
MAX_MODEL_DIM = 2 ** 24  # far beyond any model size this tool trains; 3e12 overflowed torch's size arithmetic


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Raise UserError naming the first problem; return cfg unchanged when it is sound."""
    m, t, d = cfg.model, cfg.train, cfg.data
    problems: list[str] = []
    if m.name not in choices(ModelName):
        problems.append(f"unknown model {m.name!r} (choose from: {', '.join(choices(ModelName))})")
    for name in ("d_model", "n_heads", "n_layers", "d_ff", "vocab_size", "max_seq_len"):
        if getattr(m, name) <= 0:
            problems.append(f"model.{name} must be positive, got {getattr(m, name)}")
        elif getattr(m, name) > MAX_MODEL_DIM:  # a size no tensor can take (the memory check would overflow)
            problems.append(f"model.{name} must be at most {MAX_MODEL_DIM:,}, got {getattr(m, name):.3g}")
    if m.n_heads > 0 and m.d_model % m.n_heads:
        problems.append(f"d_model ({m.d_model}) must be divisible by n_heads ({m.n_heads})")
    if m.name != "deepseek_mlp":
        if m.num_experts < 1:
            problems.append(f"num_experts must be >= 1, got {m.num_experts}")
        if m.top_k < 1 or m.top_k > m.num_experts:
            problems.append(f"top_k ({m.top_k}) must be between 1 and num_experts ({m.num_experts})")
    if m.name == "moe" and m.n_heads > 0 and m.d_model % m.n_heads == 0 and m.head_dim % 2:
        problems.append(f"head dim d_model/n_heads ({m.head_dim}) must be even for RoPE")
    if m.name.startswith("deepseek") and m.qk_rope_head_dim % 2:
        problems.append(f"qk_rope_head_dim ({m.qk_rope_head_dim}) must be even")
    if m.active_d_ff < 0 or (m.active_d_ff and m.top_k > 0 and m.active_d_ff % m.top_k):
        problems.append(f"active_d_ff ({m.active_d_ff}) must be >= 0 and divisible by top_k ({m.top_k})")
    if m.router_z_loss_weight < 0 or m.aux_loss_weight < 0 or m.bias_update_rate < 0:
        problems.append("router_z_loss_weight, aux_loss_weight and bias_update_rate must be >= 0")
    if t.muon_adjust_lr not in choices(MuonAdjustLR):
        problems.append(f"muon_adjust_lr must be {'|'.join(choices(MuonAdjustLR))}, got {t.muon_adjust_lr!r}")
    if m.moe_dispatch not in choices(Dispatch):
        problems.append(f"moe_dispatch must be {'|'.join(choices(Dispatch))}, got {m.moe_dispatch!r}")
    if not 0 <= m.dropout < 1:
        problems.append(f"dropout must be in [0, 1), got {m.dropout}")
    for name in ("steps", "batch_size", "seq_len", "grad_accum", "eval_every", "eval_batches", "log_every"):
        if getattr(t, name) <= 0:
            problems.append(f"train.{name} must be positive, got {getattr(t, name)}")
    for name in ("muon_lr", "adamw_lr_ratio"):
        v = getattr(t, name)
        if not v > 0 or v != v or v == float("inf"):
            problems.append(f"train.{name} must be a positive number, got {v}")
    if not 0 <= t.momentum < 1:
        problems.append(f"momentum must be in [0, 1), got {t.momentum}")
    if t.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0, got {t.weight_decay}")
    if not 0 <= t.warmup_frac < 1 or not 0 <= t.min_lr_frac <= 1:
        problems.append("warmup_frac must be in [0, 1) and min_lr_frac in [0, 1]")
    if t.schedule not in choices(Schedule):
        problems.append(f"schedule must be {'|'.join(choices(Schedule))}, got {t.schedule!r}")
    if t.decay_shape not in choices(DecayShape):
        problems.append(f"decay_shape must be {'|'.join(choices(DecayShape))}, got {t.decay_shape!r}")
    if not 0 < t.decay_frac <= 1:
        problems.append(f"decay_frac must be in (0, 1], got {t.decay_frac}")
    if t.warmup_steps < 0 or (t.warmup_steps and t.warmup_steps >= t.steps > 0):
        problems.append(f"warmup_steps must be >= 0 and below steps ({t.steps}), got {t.warmup_steps}")
    if t.seq_len > m.max_seq_len > 0:
        problems.append(f"seq_len ({t.seq_len}) exceeds the model's max_seq_len ({m.max_seq_len})")
    if t.amp not in choices(Amp):
        problems.append(f"amp must be {'|'.join(choices(Amp))}, got {t.amp!r}")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        problems.append(f"device must be auto|cpu|cuda|cuda:N, got {t.device!r}")
    if t.eval_seq_len < 0 or t.eval_batch_size < 0 or t.eval_seq_len > m.max_seq_len:
        problems.append(f"eval_seq_len ({t.eval_seq_len}) must be between 0 and max_seq_len ({m.max_seq_len})")
    if t.patience < 0 or t.checkpoint_every < 0 or t.hellaswag_every < 0:
        problems.append("patience, checkpoint_every and hellaswag_every must be >= 0")
    if not 0 < d.val_fraction < 0.5:
        problems.append(f"val_fraction must be in (0, 0.5), got {d.val_fraction}")
    if d.vocab_size <= 0 or d.builtin_documents <= 0:
        problems.append(f"data.vocab_size and data.builtin_documents must be positive, got {d.vocab_size}, "
                        f"{d.builtin_documents}")
    for name in ("num_documents", "max_tokens", "max_doc_chars"):
        if getattr(d, name) < 0:
            problems.append(f"data.{name} must be >= 0 (0 = no cap), got {getattr(d, name)}")
    if d.txt_split not in choices(TxtSplit):
        problems.append(f"txt_split must be {'|'.join(choices(TxtSplit))}, got {d.txt_split!r}")
    if (source_problem := check_source_name(d.source)) is not None:
        problems.append(source_problem)
    if not (d.tokenizer == "bpe" or d.tokenizer.startswith("hf:")):
        problems.append(f"unknown tokenizer {d.tokenizer!r} (use 'bpe' or 'hf:NAME')")
    if problems:
        raise UserError(problems[0])
    return cfg


def check_source_name(source: str) -> str | None:
    """The problem with the *form* of a data source string, or None (no disk or network access)."""
    if source == "builtin":
        return None
    if not source.strip():
        return "the data source is empty: use 'builtin', a file or folder, or hf:NAME[:CONFIG]"
    if source.startswith("hf:"):
        return "hub source needs a name: hf:NAME[:CONFIG]" if not source[3:].strip(":") else None
    suffix = PurePath(source).suffix
    if suffix and suffix not in DATA_FILE_SUFFIXES and not os.path.isdir(source):
        return (f"unknown data source {source!r}: use 'builtin', a .txt/.jsonl/.parquet file or folder, "
                "or hf:NAME[:CONFIG]")
    return None
