"""Every settable key of ``ExperimentConfig`` with its type, default and help, read from the dataclasses
themselves: ``moe-ablate keys`` prints it, so the README need not say "see config.py".

The help of a key is the comment on its line in ``config.py`` (the project's one place for it; dataclass
field metadata would repeat each line), or the help of the command-line flag that sets it when there is one.
Python keeps no comments at runtime, so they are read from the module's source with ``tokenize``.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
from dataclasses import dataclass
from typing import get_args

from . import config


@dataclass(frozen=True)
class Key:
    key: str  # "train.muon_lr"
    type: str  # "float", or the choices of a Literal: "cosine|wsd|constant"
    default: object
    help: str


def _line_comments(cls) -> dict[str, str]:
    """``name -> comment`` for ``name: type = default  # comment`` lines, and for a comment line just above a
    field that belongs to a group of fields (``# GLM4-MoE feed-forward (deepseek_glm4_moe)``)."""
    source, _ = inspect.getsourcelines(cls)
    out: dict[str, str] = {}
    last_code_name = None
    for tok in tokenize.generate_tokens(io.StringIO("".join(source)).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and last_code_name is None:
            last_code_name = tok.string
        elif tok.type == tokenize.COMMENT and last_code_name:
            out[last_code_name] = tok.string.lstrip("# ").strip()
        elif tok.type in (tokenize.NEWLINE, tokenize.NL):
            last_code_name = None
    return out


def _type_name(f: dataclasses.Field) -> str:
    name = f.type if isinstance(f.type, str) else f.type.__name__
    literal = getattr(config, name, None)
    return "|".join(get_args(literal)) if name in config._LITERALS and literal is not None else name


def all_keys(flag_help: dict[str, tuple[str, str]] | None = None) -> list[Key]:
    """Every ``section.name`` key in the order the dataclasses declare them. ``flag_help`` maps a key to
    ``(flag, help)`` for the keys a command-line flag sets."""
    flag_help = flag_help or {}
    out = []
    for section, cls in (("model", config.ModelConfig), ("train", config.TrainConfig), ("data", config.DataConfig)):
        comments = _line_comments(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            flag, fhelp = flag_help.get(key, ("", ""))
            text = comments.get(f.name) or fhelp
            if flag:
                text = f"{text} (flag {flag})" if text else f"flag {flag}"
            out.append(Key(key, _type_name(f), getattr(defaults, f.name), text))
    return out
