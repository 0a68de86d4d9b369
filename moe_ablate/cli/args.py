"""Flag types and flag groups shared by the commands.

Flags that *define* a study (and so must match the stored study on ``--resume``) are declared
once, through ``Defining``; a resume that gives any of them rebuilds the study from the flags and
compares it with the stored one, a resume that gives none continues the stored study.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from ..config import Amp, DecayShape, ModelName, Schedule, choices
from ..errors import UserError
from ..log import to_stderr
from ..studies.spec import limits
from ..tracking import TrackerName

DEFAULT_OUTPUT = "ablation_results"


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (no usage dump) and exits 2."""

    def error(self, message: str):  # noqa: D401
        print(f"moe-ablate: error: {message}", file=sys.stderr)
        sys.exit(2)


def _number(kind, ok, requirement: str):
    """An argparse type: parse ``kind`` and check it, with a one-line message on failure."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is int and not -2 ** 63 < v < 2 ** 63:  # a 309-digit integer overflows every float and C int
            raise argparse.ArgumentTypeError(f"must be {requirement} and below 2**63, got {text[:30]!r}"
                                             f"{'...' if len(text) > 30 else ''}")
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return v
    parse.__name__ = f"{requirement} {kind.__name__}"
    return parse


pos_int, pos_float = _number(int, lambda v: v > 0, "positive"), _number(float, lambda v: v > 0, "positive")
nonneg_int, nonneg_float = _number(int, lambda v: v >= 0, ">= 0"), _number(float, lambda v: v >= 0, ">= 0")
fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")
seed_int = _number(int, lambda v: 0 <= v < 2**32, "in [0, 2**32)")  # numpy's and every RNG's range
lr_float = _number(float, lambda v: 0 < v <= limits.MAX_LR, f"in (0, {limits.MAX_LR:g}]")
seeds_int = _number(int, lambda v: 1 <= v <= limits.MAX_SEEDS, f"in [1, {limits.MAX_SEEDS}]")
confirm_int = _number(int, lambda v: 0 <= v <= limits.MAX_CONFIRM, f"in [0, {limits.MAX_CONFIRM}]")
halving_int = _number(int, lambda v: 2 <= v <= limits.MAX_HALVING, f"in [2, {limits.MAX_HALVING}]")  # ETA: keep 1/ETA
ci_factor = _number(float, lambda v: 1 < v <= limits.MAX_CI_FACTOR, f"in (1, {limits.MAX_CI_FACTOR:g}]")
steps_int = _number(int, lambda v: 1 <= v <= limits.MAX_STEPS, f"in [1, {limits.MAX_STEPS:.0e}]")


def lr_or_auto(text: str) -> float | str:
    if text == "auto" or (text.startswith("scaling:") and len(text) > len("scaling:")):
        return text
    try:
        return pos_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number, 'auto' or scaling:DIR, got {text!r}") from None


# flag types by name: a study kind declares its flags without importing argparse (``StudyKind.add_flags``)
FLAG_TYPES = {"pos_int": pos_int, "pos_float": pos_float, "nonneg_int": nonneg_int, "nonneg_float": nonneg_float,
              "fraction": fraction, "seed_int": seed_int, "lr_float": lr_float, "lr_or_auto": lr_or_auto,
              "seeds_int": seeds_int, "steps_int": steps_int, "ci_factor": ci_factor}


def _typed(kw: dict) -> dict:
    if isinstance(kw.get("type"), str):
        if kw["type"] not in FLAG_TYPES:
            raise ValueError(f"unknown flag type {kw['type']!r} (known: {', '.join(FLAG_TYPES)})")
        kw = {**kw, "type": FLAG_TYPES[kw["type"]]}
    return kw


class Flags:
    """Flags that do not define the study (``add`` takes argparse's arguments; a ``type`` may be a FLAG_TYPES name)."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser

    def add(self, *flags, **kw) -> argparse.Action:
        return self.parser.add_argument(*flags, **_typed(kw))


class Defining:
    """An argument group whose flags define the study (see the module docstring)."""

    def __init__(self, parser: argparse.ArgumentParser, title: str):
        self.parser, self.group = parser, parser.add_argument_group(title)

    def add(self, *flags, **kw) -> argparse.Action:
        action = self.group.add_argument(*flags, **_typed(kw))
        self.parser.set_defaults(defining=(*(self.parser.get_default("defining") or ()), action.dest))
        return action


def defining_given(args: argparse.Namespace) -> list[str]:
    """The study-defining flags this command line gave."""
    return [d for d in getattr(args, "defining", ()) if getattr(args, d, None) not in (None, False)]


# flag -> (dotted config key, type, help)
EXPERIMENT_FLAGS = {
    "--model": ("model.name", str, f"architecture: {' | '.join(choices(ModelName))} (see `moe-ablate models`)"),
    "--data": ("data.source", str, "builtin (default, offline) | FILE.txt/.jsonl/.parquet | FOLDER | hf:NAME[:CONFIG]"),
    "--tokenizer": ("data.tokenizer", str, "bpe (trained locally on the data, cached) | hf:NAME"),
    "--vocab-size": ("data.vocab_size", pos_int, "vocabulary size of the local BPE tokenizer"),
    "--builtin-documents": ("data.builtin_documents", pos_int, "how many documents the builtin generator makes "
                            "(default 3000; the tiny preset 1500)"),
    "--num-documents": ("data.num_documents", nonneg_int, "read only the first N documents (default: all; hf: 3000)"),
    "--max-doc-chars": ("data.max_doc_chars", nonneg_int, "cut each document to N characters (default: whole; hf: "
                        "3000)"),
    "--max-tokens": ("data.max_tokens", nonneg_int, "keep at most N tokens, train and validation in proportion "
                     "(default: all; hf: 1,000,000). Whatever a cap drops is logged and recorded"),
    "--txt-split": ("data.txt_split", str, ".txt files: one document per paragraph (blank-line separated, default), "
                    "per line, or the whole file"),
    "--cache-dir": ("data.cache_dir", str, "where tokenizers and token arrays are cached (default "
                  "$MOE_ABLATE_CACHE, else the user cache folder, e.g. ~/.cache/moe-ablate: shared by every study)"),
    "--steps": ("train.steps", pos_int, "optimizer steps"),
    "--eval-every": ("train.eval_every", pos_int, "evaluate on the validation set every N steps"),
    "--eval-batches": ("train.eval_batches", pos_int, "validation batches per evaluation"),
    "--batch-size": ("train.batch_size", pos_int, "sequences per micro-batch"),
    "--seq-len": ("train.seq_len", pos_int, "tokens per sequence"),
    "--grad-accum": ("train.grad_accum", pos_int, "micro-batches per optimizer step"),
    "--muon-lr": ("train.muon_lr", lr_float, "Muon learning rate (2-D/3-D hidden weights)"),
    "--adamw-lr-ratio": ("train.adamw_lr_ratio", pos_float, "AdamW lr = muon lr x this (embeddings, norms, router)"),
    "--schedule": ("train.schedule", str, f"LR schedule after warmup: {' | '.join(choices(Schedule))} (wsd: "
                   "warmup-stable-decay; a grid over steps then trains one trunk and branches each shorter horizon's "
                   "decay off it)"),
    "--decay-frac": ("train.decay_frac", pos_float,
                     "wsd: the decay covers this last fraction of the run (default 0.2)"),
    "--decay-shape": ("train.decay_shape", str, f"wsd decay: {' | '.join(choices(DecayShape))} (default 1-sqrt)"),
    "--warmup-steps": ("train.warmup_steps", nonneg_int, "warm up over N steps instead of 5%% of the run (WSD "
                       "horizons share a trunk only when they warm up alike)"),
    "--momentum": ("train.momentum", fraction, "Muon momentum"),
    "--weight-decay": ("train.weight_decay", nonneg_float, "decoupled weight decay for both optimizers"),
    "--grad-clip": ("train.grad_clip", nonneg_float, "gradient-norm clip (0 = off)"),
    "--patience": ("train.patience", nonneg_int, "early-stopping patience in evaluations (0 = off)"),
    "--num-experts": ("model.num_experts", pos_int, "routed experts per MoE layer"),
    "--top-k": ("model.top_k", pos_int, "experts chosen per token"),
    "--aux-loss-weight": ("model.aux_loss_weight", nonneg_float, "load-balancing loss weight (0 = off)"),
    "--bias-update-rate": ("model.bias_update_rate", nonneg_float, "GLM4 router bias update gamma (0 = off)"),
    "--device": ("train.device", str, "auto | cpu | cuda | cuda:N (auto: CUDA when available)"),
    "--amp": ("train.amp", str, f"CUDA mixed precision: {' | '.join(choices(Amp))} (auto: bf16, else fp16)"),
    "--seed": ("train.seed", seed_int, "random seed (init, batches, router noise), 0 .. 2**32 - 1"),
}


def add_experiment_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    g = Defining(p, "experiment settings (override the preset)")
    g.add("--preset", default=None, help="model/run size: seed | tiny | exp9 | exp3")
    for flag, (_, typ, help_) in EXPERIMENT_FLAGS.items():
        if flag not in skip:
            g.add(flag, type=typ, default=None, help=help_)
    g.add("--compile", action="store_true", default=None, help="torch.compile the model (CUDA only)")


def experiment_overrides(args: argparse.Namespace) -> dict:
    out = {}
    for flag, (key, _, _) in EXPERIMENT_FLAGS.items():
        v = getattr(args, flag[2:].replace("-", "_"), None)
        if v is not None:
            out[key] = v
    if getattr(args, "compile", None):
        out["train.compile"] = True
    return out


def add_study_flags(p: argparse.ArgumentParser, default_name: str, name_flag: bool = True,
                    confirm: bool = True) -> None:
    g = p.add_argument_group("study folder")
    g.add_argument("--output-dir", default=DEFAULT_OUTPUT, help="parent folder of studies (default %(default)s)")
    if name_flag:
        g.add_argument("--name", dest="study_folder", default=None, help=f"study folder name (default "
                                                                         f"{default_name}_<YYYYmmdd_HHMMSS>)")
    g.add_argument("--resume", metavar="DIR", default=None,
                   help="continue an interrupted study in DIR: finished experiments are kept, the rest run. "
                        "Give no study flags (or exactly the original ones)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    g.add_argument("--dry-run", action="store_true",
                   help="print the plan (configurations, seeds, runs with confirmation, steps, tokens, FLOPs, an ETA "
                        "from a few measured steps) and exit without writing anything")
    g.add_argument("--no-measure", action="store_true", help="with --dry-run: no measured steps, so no ETA")
    if confirm:
        Defining(p, "confirmation").add(
            "--confirm", type=confirm_int, default=None, metavar="K",
            help="after the grid, rerun the top configurations (the best and those within noise of it, at most 3) "
                 "with K more seeds and recommend on the replicated set (default 2 for studies of >= 4 "
                 "configurations; 0 turns it off)")
    if confirm:
        h = Defining(p, "successive halving")
        h.add("--halving", type=halving_int, default=None, metavar="ETA",
              help="after each rung keep the best 1/ETA of the configurations; they continue exactly from their "
                   "checkpoint (e.g. 3)")
        h.add("--min-steps", type=steps_int, default=None, help="steps of the first rung (default steps / ETA^2)")
        h.add("--halving-restart", action="store_true",
              help="keep no checkpoints: rerun survivors from step 0 (more compute)")
    add_tracking_flags(p)
    x = p.add_argument_group("where experiments run")
    x.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one after another here (default); ray: one Ray task per experiment, in parallel "
                        "on this machine's GPUs/CPUs or a cluster (pip install 'moe-ablate[ray]')")
    x.add_argument("--ray-address", default=None, help="an existing Ray cluster, e.g. auto or ray://head:10001 "
                                                       "(default: start a local one sized to this machine)")
    x.add_argument("--gpus-per-experiment", type=nonneg_float, default=None,
                   help="GPUs per Ray task (default 1 on CUDA machines, else 0)")
    x.add_argument("--cpus-per-experiment", type=pos_float, default=1.0, help="CPUs per Ray task (default 1)")


def add_tracking_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live tracking")
    g.add_argument("--tracker", action="append", choices=list(choices(TrackerName)), default=[],
                   help="log every experiment to TensorBoard, Weights & Biases or MLflow as it trains (repeatable; "
                        "pip install 'moe-ablate[tensorboard]' etc.). W&B honours WANDB_MODE=offline")
    g.add_argument("--tracking-dir", default=None,
                   help="where tracker files go (default <output-dir>/tracking: tensorboard/, wandb/, mlruns/)")


def tracking_kwargs(args) -> dict:
    return {"trackers": tuple(dict.fromkeys(args.tracker)), "tracking_dir": args.tracking_dir}


def study_dir_for(args, default_name: str) -> Path:
    """The study folder: --resume DIR, --name, or a new timestamped folder (never an existing one)."""
    if args.resume is not None:
        if not str(args.resume).strip():  # an empty --resume (an unset shell variable) never starts a new study
            raise UserError("--resume needs a study folder, got an empty name")
        return Path(args.resume)
    if getattr(args, "study_folder", None) is not None:
        from ..studies.spec.file import safe_name

        return Path(args.output_dir) / safe_name(args.study_folder, "--name")
    stamp = time.strftime("%Y%m%d_%H%M%S")
    path, n = Path(args.output_dir) / f"{default_name}_{stamp}", 2
    while path.exists():
        path, n = Path(args.output_dir) / f"{default_name}_{stamp}_{n}", n + 1
    return path


def notes_on_unused_flags(args, log) -> None:
    """Flags that have no effect in this command line say so (they are not silently ignored)."""
    if getattr(args, "min_steps", None) and not getattr(args, "halving", None):
        log("note: --min-steps has no effect without --halving")
    if getattr(args, "halving_restart", False) and not getattr(args, "halving", None):
        log("note: --halving-restart has no effect without --halving")
    if getattr(args, "resume", None) and getattr(args, "study_folder", None):
        log("note: --name has no effect with --resume (the study keeps its folder)")
    if getattr(args, "compile", None):
        import torch

        device = getattr(args, "device", None) or "auto"
        if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
            log("note: --compile has no effect on CPU (it compiles on CUDA only)")


def executor(args):
    from ..studies.engine.runner import LocalExecutor

    if args.executor == "ray":
        from ..studies.engine.ray_executor import RayExecutor

        if getattr(args, "halving", None):
            raise UserError("--halving runs with the local executor (its rungs continue from checkpoints on this "
                            "machine's disk)")
        return RayExecutor(args.ray_address, args.gpus_per_experiment, args.cpus_per_experiment)
    return LocalExecutor()


log = to_stderr


def writable(folder: Path) -> None:
    """Prove that ``folder`` can be made and take a file (by writing a probe into its nearest existing
    ancestor, which creates nothing), so a run never trains only to fail at its first write."""
    import os
    import tempfile

    from ..utils import TMP_SUFFIX

    here = Path(folder).absolute()
    while not here.exists():
        here = here.parent
    if not here.is_dir():
        raise UserError(f"cannot create {folder}: {here} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=here, prefix=".probe.", suffix=TMP_SUFFIX)
    except OSError as e:  # name the folder the user gave, not the probe
        raise OSError(e.errno, e.strerror or str(e), str(folder)) from None
    os.close(fd)
    os.unlink(probe)


def fresh_dir(path: Path) -> Path:
    if path.exists() and any(path.iterdir()):
        raise UserError(f"output folder {path} already exists and is not empty; choose another --output-dir")
    return path
