"""``moe-ablate`` command line: the only package that knows argparse. Thin: parse flags, build a
config or a study, call the library. Nothing in the library imports it.

Every user mistake surfaces as ``moe-ablate: error: <one line>`` with exit code 2.
"""

from __future__ import annotations

import sys

from ..errors import StudyFailed, UserError
from ..interrupt import Interrupted
from . import data_cmds, study_cmds, train_cmds
from .args import Parser

# command groups, in the order --help lists them; each registers its subcommands
COMMAND_GROUPS = (train_cmds.register, study_cmds.register, data_cmds.register)


def build_parser() -> Parser:
    p = Parser(prog="moe-ablate", description="Hyperparameter ablation studies for small Mixture-of-Experts "
               "language models: train, run studies, analyse results.")
    from .. import __version__

    p.add_argument("--version", action="version", version=f"moe-ablate {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"moe-ablate: error: {e}", file=sys.stderr)
        return 2
    except StudyFailed as e:
        print(f"moe-ablate: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `moe-ablate keys | head`: the reader left; nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # disk full, permission denied, read-only folder, missing parent
        where = f": {e.filename}" if e.filename else ""
        print(f"moe-ablate: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"moe-ablate: {e}; the running experiment is recorded as interrupted and finished ones are saved "
              "(continue with --resume)", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        runs = args.command in {k.command for k in study_kinds()} or (args.command == "train" and args.exp)
        print("moe-ablate: interrupted" + ("; finished experiments are saved (resume with --resume)" if runs else
                                           "; nothing it was writing was left half-written"), file=sys.stderr)
        return 130


def study_kinds():
    from ..studies import kinds

    return kinds.with_commands()


if __name__ == "__main__":
    sys.exit(main())
