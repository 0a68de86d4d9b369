"""The numbers the #34 redesign is judged by, measured on moe_ablate/ (before/after in the closing note).

    python scripts/code_metrics.py

Longest functions, functions with the most parameters, lines over 110/120 characters, and how often
the study folder's layout and the record's keys are spelled out by hand.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "moe_ablate"
SPELLED = {'"checkpoints"': r'"checkpoints"',
           'r.get("config_id", ...)': r'\.get\("config_id", \w+\["experiment_id"\]\)',
           "def keep_newest": r"def keep_newest", '"experiments"': r'"experiments"'}


def main() -> None:
    funcs, long_lines, files = [], {110: 0, 120: 0}, list(ROOT.rglob("*.py"))
    text = {p: p.read_text() for p in files}
    for p, src in text.items():
        for line in src.splitlines():
            for n in long_lines:
                long_lines[n] += len(line) > n
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n_params = len(a.posonlyargs + a.args + a.kwonlyargs) - (a.args[:1] != [] and a.args[0].arg in ("self",
                                                                                                                "cls"))
                funcs.append((node.end_lineno - node.lineno + 1, n_params, f"{p.relative_to(ROOT.parent)}:{node.name}"))
    print(f"{len(files)} files, {sum(s.count(chr(10)) for s in text.values())} lines")
    print("longest functions:", ", ".join(f"{name} {n}" for n, _, name in sorted(funcs, reverse=True)[:6]))
    print("functions over 80 lines:", sum(n > 80 for n, _, _ in funcs))
    print("most parameters:", ", ".join(f"{name} {k}" for _, k, name in sorted(funcs, key=lambda f: -f[1])[:6]))
    print("lines over 110 / 120 characters:", long_lines[110], "/", long_lines[120])
    for label, pat in SPELLED.items():
        hits = [p for p, s in text.items() for _ in re.finditer(pat, s)]
        print(f"{label} spelled {len(hits)} times in {len(set(hits))} files")


if __name__ == "__main__":
    main()
