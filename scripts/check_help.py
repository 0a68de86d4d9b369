"""Run ``moe-ablate ... --help`` for every command and subcommand, as a separate process through the
installed entry point (so a missing dependency or a broken help string fails here, as it would for a
user). Prints one line per command; exit 1 if any failed. CI runs it in the fresh, extras-free venv.

    python scripts/check_help.py [path/to/moe-ablate]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser, the top level included."""
    out = [prefix]
    for action in parser._actions:  # argparse has no public walk of subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += commands(sub, (*prefix, name))
    return out


def main() -> int:
    from moe_ablate.cli import build_parser

    exe = sys.argv[1] if len(sys.argv) > 1 else shutil.which("moe-ablate")
    if exe is None:
        print("moe-ablate is not on PATH; give its path", file=sys.stderr)
        return 1
    failed = 0
    for path in commands(build_parser()):
        done = subprocess.run([exe, *path, "--help"], capture_output=True, text=True, timeout=120)
        bad = done.returncode != 0 or "%%" in done.stdout or "Traceback" in done.stderr
        failed += bad
        print(f"{'FAIL' if bad else 'ok  '} {' '.join(('moe-ablate', *path, '--help'))}"
              + (f"\n{done.stderr[-1500:]}{done.stdout[-500:]}" if bad else ""))
    print(f"--help: {len(commands(build_parser())) - failed} commands ok, {failed} failing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
