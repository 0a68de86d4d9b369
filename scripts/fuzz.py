"""Fuzz every input boundary with generated bad (and good) input, and check the contract:

    exit 0 (or a returned result), or exit 2 / UserError with ONE line and no traceback; never a hang;
    never a file changed outside the study folder.

Generators (``hypothesis`` strategies) make study TOML files (sections, keys and values: misspelt,
mistyped, empty, NaN/inf, huge, duplicated, seed as an axis), flag values for every experiment flag,
HellaSwag items, data files, tampered study folders (a finished study's records and config.json edited,
copied, repeated or replaced by junk: read through the gate of ``studies/engine/records.py`` and analysed), and
names that become file names (``--name``, ``[study] name``, ``[[strategy]] name``: nothing written outside
``--output-dir``).
In-process checks run the real parsers and validators
(``grid.make_study`` + ``resolve_configs``, the CLI parser + ``validate``, ``hellaswag.load_items``);
``--cli N`` also runs N end-to-end ``moe-ablate`` commands in subprocesses with a timeout (hangs), a
one-step tiny study for the inputs that are valid, and a sentinel folder that must stay unchanged.
``tests/test_fuzz.py`` runs the same checks with a small budget in ``make test``.

    python scripts/fuzz.py                    # 2000 cases per boundary, 40 end-to-end commands
    python scripts/fuzz.py --cases 200 --cli 10
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moe_ablate.config import DataConfig, ModelConfig, TrainConfig, apply_overrides, preset_config, validate
from moe_ablate.errors import UserError

FIELDS = {"model": [f for f in ModelConfig.__dataclass_fields__],
          "train": [f for f in TrainConfig.__dataclass_fields__],
          "data": [f for f in DataConfig.__dataclass_fields__]}
TYPO = st.sampled_from(["grdi", "bsae", "qiuck", "", "study ", "model", "trian", "Grid"])
SCALAR = st.one_of(st.integers(-10, 10**6), st.integers(min_value=2**62, max_value=2**64).map(lambda v: v - 2**63),
                   st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.text(max_size=12), st.sampled_from(["moe", "deepseek_mlp", "auto", "cpu", "bpe", "builtin"]))
STUDY_KEYS = st.sampled_from(["name", "preset", "metric", "description", "seeds", "confirm", "kind", "lrs",
                              "nmae", "metirc"])
STUDY_VALUES = st.one_of(SCALAR, st.sampled_from(["tiny", "seed", "val_loss", "val_accuracy", "lr_transfer", "grid",
                                                  "../../x", "a/b"]),
                         st.lists(SCALAR, max_size=3))


def _field(section: str):
    return st.one_of(st.sampled_from(FIELDS[section]), st.sampled_from(["lr", "muon_lrr", "seed", "d_modle"]))


def _section(values):
    keys = st.sampled_from(sum(FIELDS.values(), []) + ["lr", "muon_lrr"])
    return st.dictionaries(st.sampled_from(["model", "train", "data", "modle", "optim"]),
                           st.dictionaries(keys, values, max_size=3), max_size=2)


def _near_valid(lrs, axis, base):
    """A sound study file, perhaps with one more axis or base setting (which may be wrong)."""
    d = {"study": {"name": "fuzz", "preset": "tiny"}, "grid": {"train": {"muon_lr": lrs}}}
    if axis is not None:
        section, key, values = axis
        d["grid"].setdefault(section, {})[key] = values
    if base is not None:
        section, key, value = base
        d["base"] = {section: {key: value}}
    return d


NEAR_VALID = st.builds(
    _near_valid, st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=3),
    st.one_of(st.none(), st.sampled_from(list(FIELDS)).flatmap(
        lambda sec: st.tuples(st.just(sec), _field(sec), st.lists(SCALAR, min_size=1, max_size=3)))),
    st.one_of(st.none(), st.sampled_from(list(FIELDS)).flatmap(lambda sec: st.tuples(st.just(sec), _field(sec),
                                                                                     SCALAR))))

RANDOM_STUDY_FILE = st.fixed_dictionaries({}, optional={
    "study": st.one_of(st.dictionaries(STUDY_KEYS, STUDY_VALUES, max_size=4), SCALAR),
    "base": _section(SCALAR),
    "grid": _section(st.one_of(st.lists(SCALAR, max_size=4), SCALAR)),
    "quick": _section(st.lists(SCALAR, max_size=3)),
}).flatmap(lambda d: st.dictionaries(TYPO, st.dictionaries(st.just("x"), SCALAR, max_size=1), max_size=1).map(
    lambda extra: {**d, **extra}))
STUDY_FILE = st.one_of(NEAR_VALID, RANDOM_STUDY_FILE)


# ---------------------------------------------------------------- a small TOML writer for the generated dicts
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def to_toml(d: dict) -> str:
    lines = []
    for key, value in d.items():
        if not isinstance(value, dict):
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    for key, value in d.items():
        if isinstance(value, dict):
            flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in flat.items()]
            for sub, inner in value.items():
                if isinstance(inner, dict):
                    lines.append(f"[{json.dumps(key)}.{json.dumps(sub)}]")
                    lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in inner.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the contracts, in process
class Broken(AssertionError):
    """A case that broke the contract (a traceback other than UserError, or more than one line)."""


def check_study_file(raw: dict, folder: Path) -> str:
    """"ok" or "refused"; raises Broken on anything else."""
    from moe_ablate.studies.engine.runner import resolve_configs
    from moe_ablate.studies.kinds import grid

    path = folder / "study.toml"
    path.write_text(to_toml(raw))
    try:
        study = grid.make_study(str(path), preset="tiny", max_experiments=3)
        resolve_configs(study)
        json.dumps(study.to_dict(), allow_nan=False)  # storable, so resumable
        return "ok"
    except UserError as e:
        if "\n" in str(e):
            raise Broken(f"multi-line error: {e}") from None
        return "refused"
    except Exception as e:  # noqa: BLE001  (the contract: nothing but UserError)
        raise Broken(f"{type(e).__name__}: {e}\n--- file:\n{path.read_text()}") from e


FLAG_VALUES = st.one_of(st.text(max_size=8), st.integers(-3, 10**12).map(str), st.floats().map(repr),
                        st.integers(2**62, 10**400).map(str),  # huge integers: refused at the flag, never overflow
                        st.sampled_from(["nan", "inf", "-inf", "1e300", "1e-300", str(2**64), "0", "-0", "1e9",
                                         "0x10", " 3", "", "auto"]))


def check_flag(flag: str, value: str) -> str:
    from moe_ablate.cli import build_parser
    from moe_ablate.cli.args import experiment_overrides

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(["train", flag, value])
    except SystemExit as e:
        lines = err.getvalue().strip().splitlines()
        if e.code != 2 or len(lines) != 1 or not lines[0].startswith("moe-ablate: error:"):
            raise Broken(f"{flag} {value!r}: exit {e.code}, stderr {lines}") from None
        return "refused"
    try:
        validate(apply_overrides(preset_config(args.preset or "tiny"), experiment_overrides(args)))
        return "ok"
    except UserError:
        return "refused"
    except Exception as e:  # noqa: BLE001
        raise Broken(f"{flag} {value!r}: {type(e).__name__}: {e}") from e


VALID_ITEM = st.fixed_dictionaries({"activity_label": st.text(max_size=5), "ctx_a": st.text(max_size=8),
                                    "ctx_b": st.text(max_size=8), "endings": st.lists(st.text(max_size=6), min_size=4,
                                                                                      max_size=4),
                                    "label": st.integers(0, 3)})
RANDOM_ITEM = st.fixed_dictionaries({}, optional={
    "activity_label": st.one_of(st.text(max_size=5), st.integers()), "ctx_a": st.one_of(st.text(max_size=8), st.none()),
    "ctx_b": st.text(max_size=8), "endings": st.one_of(st.lists(st.one_of(st.text(max_size=6), st.integers()),
                                                                 max_size=5), st.text(max_size=5)),
    "label": st.one_of(st.integers(-2, 6), st.text(max_size=2), st.floats(), st.booleans())})
HELLASWAG_ITEM = st.one_of(VALID_ITEM, VALID_ITEM, RANDOM_ITEM)


def check_hellaswag(items: list, folder: Path, raw_bytes: bytes | None = None) -> str:
    from moe_ablate.hellaswag import load_items

    path = folder / "hs.jsonl"
    path.write_bytes(raw_bytes if raw_bytes is not None else "\n".join(json.dumps(i) for i in items).encode())
    try:
        loaded = load_items(str(path))
        for item in loaded:
            assert 0 <= item.label < len(item.choices) and len(item.choices) >= 2
        return "ok"
    except UserError:
        return "refused"
    except Exception as e:  # noqa: BLE001
        raise Broken(f"{type(e).__name__}: {e}\n--- file:\n{path.read_bytes()[:300]!r}") from e


# ---------------------------------------------------------------- end to end, in subprocesses
TINY = ["--preset", "tiny", "--steps", "1", "--eval-every", "1", "--eval-batches", "1", "--batch-size", "2",
        "--seq-len", "16", "--builtin-documents", "60", "--vocab-size", "300", "--no-progress", "--confirm", "0"]


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> dict:
    """One command; the contract checked, and a sentinel folder beside the output compared before/after."""
    sentinel = cwd / "users_own_files"
    sentinel.mkdir(exist_ok=True)
    (sentinel / "report.md").write_text("mine")
    (sentinel / ".notes.tmp").write_text("mine too")
    before = {p: p.read_bytes() for p in sentinel.rglob("*")}
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "moe_ablate", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"outcome": "hang", "args": args}
    lines = done.stderr.strip().splitlines()
    outcome = "ok" if done.returncode == 0 else "refused" if done.returncode in (1, 2) else "crash"
    if "Traceback" in done.stderr or (done.returncode == 2 and (not lines or not lines[-1].startswith("moe-ablate: "))):
        outcome = "traceback"
    if {p: p.read_bytes() for p in sentinel.rglob("*") if p.is_file()} != {p: b for p, b in before.items()
                                                                           if p.is_file()}:
        outcome = "touched"
    return {"outcome": outcome, "args": args, "seconds": time.perf_counter() - t0,
            "stderr": "\n".join(lines[-3:])}


SPECIAL_FILES = ("fifo", "folder", "devnull", "symlink to fifo", "empty", "junk")
# where the tool reads a file the user names ("FILE" is replaced): the command and the file's suffix
FILE_INPUTS = {"config": ["run", "--config", "FILE"],
               "data": ["data", "prepare", "--data", "FILE"],
               "checkpoint": ["hellaswag", "--checkpoint", "FILE", "--data", "items.jsonl"],
               "resume checkpoint": ["train", "--resume", "FILE"]}
SUFFIX = {"config": ".toml", "data": ".txt", "checkpoint": ".pt", "resume checkpoint": ".pt"}


def special_file(stem: Path, kind: str, command: list[str]) -> Path:
    """A file of ``kind`` with the suffix the command expects."""
    target = next(k for k, v in FILE_INPUTS.items() if v == command)
    path = stem.with_suffix(SUFFIX[target])
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "devnull":
        path.symlink_to("/dev/null")
    elif kind == "symlink to fifo":
        fifo = stem.with_name(stem.name + "_fifo")
        os.mkfifo(fifo)
        path.symlink_to(fifo)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(bytes(range(256)) * 4)
    return path


def cli_cases(n: int, work: Path) -> list[dict]:
    """``n`` commands from generated study files and flag values, run end to end."""
    out = []
    examples: list[list[str]] = []

    @settings(max_examples=n, database=None, suppress_health_check=list(HealthCheck), deadline=None)
    @given(raw=STUDY_FILE, flag=st.sampled_from(sorted(_experiment_flags())), value=FLAG_VALUES,
           which=st.integers(0, 3), special=st.sampled_from(SPECIAL_FILES), target=st.sampled_from(sorted(FILE_INPUTS)))
    def collect(raw, flag, value, which, special, target):
        i = len(examples)
        path = work / f"study_{i}.toml"
        path.write_text(to_toml(raw))
        cache = ["--cache-dir", str(work / "cache")]
        if which == 3:  # a special file where the tool reads one: refused in one line, never a hang
            f = special_file(work / f"special_{i}", special, FILE_INPUTS[target])
            examples.append([*(a if a != "FILE" else str(f) for a in FILE_INPUTS[target]), *cache]
                            if target != "config" else ["run", "--config", str(f), "--output-dir", str(work / "out"),
                                                        *TINY, *cache])
        elif which == 0:
            examples.append(["run", "--config", str(path), "--max-experiments", "2", "--output-dir",
                             str(work / "out"), *TINY, *cache])
        elif which == 1:
            examples.append(["train", *TINY, flag, value, "--output-dir", str(work / "out" / f"t{i}"), *cache])
        else:
            examples.append(["run", "--quick", *TINY, flag, value, "--output-dir", str(work / "out"), "--name",
                             value or "x", *cache])

    collect()
    for args in examples:
        out.append(run_cli(args, work))
    return out


def _experiment_flags() -> list[str]:
    from moe_ablate.cli.args import EXPERIMENT_FLAGS

    return list(EXPERIMENT_FLAGS)


# ---------------------------------------------------------------- tampered study folders (issue 36)
JSON_VALUE = st.recursive(st.one_of(st.none(), SCALAR), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)
RECORD_KEYS = st.sampled_from(["experiment_id", "config_id", "status", "stage", "hyperparameters", "val_loss",
                               "best_val_loss", "config", "seed", "history", "steps", "error", "tokens"])
RECORD_OP = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 3), RECORD_KEYS, JSON_VALUE),
    st.tuples(st.just("drop"), st.integers(0, 3), RECORD_KEYS, st.none()),
    st.tuples(st.just("copy"), st.integers(0, 3), st.sampled_from(["exp_000 copy", "exp_9", "x", "EXP_001"]),
              st.none()),
    st.tuples(st.just("junk"), st.integers(0, 3), st.none(), st.binary(max_size=30)),
    st.tuples(st.just("config"), st.integers(0, 3), st.sampled_from(
        ["metric", "confirm", "halving", "min_steps", "kind", "experiments", "base", "params", "name", "id",
         "overrides", "config_id", "stage", "train.steps", "data.num_documents"]), JSON_VALUE),
    st.tuples(st.just("repeat"), st.integers(0, 3), st.none(), st.none()))


def base_study(work: Path) -> Path:
    """A finished 4-experiment study (a 2-step tiny grid), trained once; the tampered folders copy it."""
    import kill_resume

    from moe_ablate.cli import main as cli

    toml = work / "base.toml"
    toml.write_text(kill_resume.study_toml(2, "[0.01, 0.05]", 0, str(work / "cache"), name="base"))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["run", "--config", str(toml), "--output-dir", str(work / "studies"), "--name", "base",
                    "--no-progress"]) == 0
    return work / "studies" / "base"


def tamper(d: Path, ops: list) -> bool:
    """Apply ``ops`` to the study folder ``d``; True when config.json was changed."""
    exp = d / "experiments"
    files = sorted(exp.glob("exp_*.json"))
    stored = False
    for op, i, key, value in ops:
        f = files[i % len(files)]
        if op in ("set", "drop"):
            try:
                rec = json.loads(f.read_text())
                rec[key] = value if op == "set" else rec.pop(key, None)
                if op == "drop":
                    rec.pop(key, None)
                f.write_text(json.dumps(rec))
            except (ValueError, TypeError, AttributeError):
                pass
        elif op == "copy":
            (exp / f"{key}.json").write_bytes(f.read_bytes())
        elif op == "junk":
            f.write_bytes(value)
        else:
            cfg = json.loads((d / "config.json").read_text())
            study = cfg["study"]
            try:  # an earlier op may have replaced what this one edits: then it has nothing to edit
                if op == "repeat":
                    study["experiments"].append(study["experiments"][i % len(study["experiments"])])
                elif key in ("id", "overrides", "config_id", "stage"):
                    study["experiments"][i % len(study["experiments"])][key] = value
                elif "." in key:
                    section, field = key.split(".")
                    study["base"][section][field] = value
                else:
                    study[key] = value
            except (TypeError, AttributeError, KeyError, IndexError, ZeroDivisionError):
                continue
            (d / "config.json").write_text(json.dumps(cfg))
            stored = True
    return stored


def check_tampered(base: Path, ops: list, work: Path) -> str:
    """The gate's contract on a tampered copy of ``base``: a result or one line, never a traceback; a record is
    counted only under its own file name, as an experiment of the study, with a known status and settings."""
    import shutil

    from moe_ablate.analysis.stats import analyze
    from moe_ablate.studies.engine.records import STATUSES, read_records
    from moe_ablate.studies.engine.runner import resolve_configs
    from moe_ablate.studies.spec.stored import load_study

    d = work / "tampered"
    shutil.rmtree(d, ignore_errors=True)
    (d / "experiments").mkdir(parents=True)
    shutil.copy(base / "config.json", d / "config.json")
    for f in (base / "experiments").glob("*.json"):
        shutil.copy(f, d / "experiments" / f.name)
    tamper(d, ops)
    try:
        study, _ = load_study(d)
        specs = {e.id: e for e in study.experiments}
        done, _ = read_records(d / "experiments", specs, resolve_configs(study), lambda m: None)
        records = [done[e.id] for e in study.experiments if e.id in done]
        for eid, rec in done.items():
            if (rec.get("experiment_id") != eid or eid not in specs or rec.get("status") not in STATUSES
                    or rec.get("config_id", specs[eid].config_id) != specs[eid].config_id):
                raise Broken(f"wrong result: {eid} counted as evidence ({ops})")
        if records:
            json.dumps(analyze(records, study.metric), default=str)
        return "ok" if records else "nothing counted"
    except UserError as e:
        if "\n" in str(e):
            raise Broken(f"multi-line error: {e}") from None
        return "refused"
    except Broken:
        raise
    except Exception as e:  # noqa: BLE001  (the contract: nothing but UserError)
        import traceback

        raise Broken(f"{type(e).__name__}: {e}\nops: {ops}\n{traceback.format_exc()[-1500:]}") from e


# ---------------------------------------------------------------- names that become files (issue 36)
HOSTILE_NAMES = ["../escaped", "../../../../escaped", "a/b", "..", ".", ".hidden", "/abs/escaped", "x\\y", "nul\0x",
                 "tab\tname", "new\nline", "\udcff\udcfe", "é" * 200, "a" * 201, "a" * 250, " ", "-", "--name",
                 "ok_name", "CON", "name with spaces", "ü_ß_漢字", "a" * 60 + "/" + "b"]
NAME = st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(st.sampled_from(list("ab./\\ \0\n_-é漢\udcff")), max_size=12))
NAME_TARGETS = ("run --name", "batch-seqlen --name", "[study] name", "[[strategy]] name", "lr-search --name")


def name_command(target: str, name: str, work: Path, i: int) -> list[str]:
    """A tiny one-step study whose ``name`` ends up in a file or folder name."""
    out, cache = str(work / "out"), ["--cache-dir", str(work / "cache")]
    if target == "run --name":
        return ["run", "--quick", *TINY, "--output-dir", out, "--name", name, *cache]
    if target == "batch-seqlen --name":
        return ["batch-seqlen", "--batch", "2", "--seqlen", "16", "--lr", "0.01", "--name", name, "--output-dir", out,
                *[a for a in TINY if a not in ("--batch-size", "2", "--seq-len", "16")], *cache]
    if target == "lr-search --name":
        return ["lr-search", "--exp", "9", "--lrs", "0.01", "--name", name, "--output-dir", out, *TINY, *cache]
    path = work / f"names_{i}.toml"
    if target == "[study] name":
        path.write_text(to_toml({"study": {"name": name, "preset": "tiny"}, "grid": {"train": {"muon_lr": [0.01]}}}))
        return ["run", "--config", str(path), "--output-dir", out, *TINY, *cache]
    path.write_text(to_toml({"study": {"name": "bs", "preset": "tiny", "lrs": [0.01]}})
                    + f"[[strategy]]\nname = {json.dumps(name)}\nbatch_size = 2\nseq_len = 16\n")
    return ["batch-seqlen", "--config", str(path), "--output-dir", out,
            *[a for a in TINY if a not in ("--batch-size", "2", "--seq-len", "16")], *cache]


def check_name(target: str, name: str, work: Path, i: int) -> str:
    """In process: exit 0 or one line (exit 2), and nothing written outside --output-dir (and the data cache)."""
    from moe_ablate.cli import main as cli

    def outside() -> dict[str, float]:
        keep = (work / "out", work / "cache")
        return {str(p): p.stat().st_mtime_ns for p in work.rglob("*")
                if not any(p == k or k in p.parents for k in keep) and not p.name.startswith("names_")}

    before = outside()
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli(name_command(target, name, work, i))
    except SystemExit as e:
        code = e.code
    except Exception as e:  # noqa: BLE001  (the contract: nothing but a result or one line)
        raise Broken(f"{target} {name!r}: {type(e).__name__}: {e}") from e
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.startswith("moe-ablate: ")]
    if "Traceback" in err.getvalue() or (code != 0 and len(lines) != 1):
        raise Broken(f"{target} {name!r}: exit {code}, stderr {err.getvalue()[-800:]}")
    moved = {p for p, t in outside().items() if before.get(p) != t}
    if moved:
        raise Broken(f"{target} {name!r}: wrote outside --output-dir: {sorted(moved)[:3]}")
    return "ok" if code == 0 else "refused"


def fuzz_in_process(cases: int, work: Path) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}

    def tally(boundary: str, outcome: str) -> None:
        counts.setdefault(boundary, {}).setdefault(outcome, 0)
        counts[boundary][outcome] += 1

    common = settings(max_examples=cases, database=None, deadline=None, suppress_health_check=list(HealthCheck))

    @common
    @given(raw=STUDY_FILE)
    def study_files(raw):
        tally("study TOML", check_study_file(raw, work))

    @common
    @given(flag=st.sampled_from(_experiment_flags()), value=FLAG_VALUES)
    def flags(flag, value):
        tally("flag values", check_flag(flag, value))

    @common
    @given(items=st.lists(HELLASWAG_ITEM, max_size=3),
           junk=st.one_of(st.none(), st.none(), st.binary(max_size=40)))
    def hellaswag(items, junk):
        tally("HellaSwag files", check_hellaswag(items, work, junk))

    base = base_study(work)

    @common
    @given(ops=st.lists(RECORD_OP, min_size=1, max_size=3))
    def tampered(ops):
        tally("tampered study", check_tampered(base, ops, work))

    @settings(max_examples=max(1, cases // 4), database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(target=st.sampled_from(NAME_TARGETS), name=NAME)
    def names(target, name):  # each accepted name trains a one-step study: a quarter of the budget
        tally("names", check_name(target, name, work, sum(counts.get("names", {}).values())))

    for run in (study_files, flags, hellaswag, tampered, names):
        run()
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=2000, help="generated cases per in-process boundary")
    p.add_argument("--cli", type=int, default=40, help="end-to-end commands in subprocesses")
    a = p.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broken = 0
        try:
            counts = fuzz_in_process(a.cases, work)
        except Broken as e:
            print(f"BROKEN: {e}")
            return 1
        for boundary, c in counts.items():
            print(f"{boundary:<16} {sum(c.values()):>6} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
        results = cli_cases(a.cli, work) if a.cli else []
        summary: dict[str, int] = {}
        for r in results:
            summary[r["outcome"]] = summary.get(r["outcome"], 0) + 1
            if r["outcome"] in ("hang", "traceback", "touched", "crash"):
                broken += 1
                print(f"{r['outcome'].upper()}: moe-ablate {' '.join(r['args'])}\n{r.get('stderr', '')}")
        if results:
            print(f"{'end to end':<16} {len(results):>6} commands: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(summary.items())))
    total = sum(sum(c.values()) for c in counts.values()) + len(results)
    print(f"{total} cases tried; tracebacks {sum(r['outcome'] == 'traceback' for r in results)}, hangs "
          f"{sum(r['outcome'] == 'hang' for r in results)}, files outside the study changed "
          f"{sum(r['outcome'] == 'touched' for r in results)}; {time.perf_counter() - t0:.0f} s")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
