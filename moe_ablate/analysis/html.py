"""``report.html``: the report as one self-contained page (figures embedded, no network), from the same data as
``report.md``: the answer and its caveats, the settings it holds for, a sortable, filterable configuration table
with the recommended configuration marked, then ``report.md`` itself rendered (markdown-it-py) with its figures
inlined. Laid out by a Jinja2 template (``templates/report.html.j2``), autoescaped: every value from a study is
text, never markup.
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import Any

from .report import ordered_configurations


def _cell(v: Any) -> dict[str, str]:
    if isinstance(v, float):
        if not math.isfinite(v):
            return {"text": "n/a", "sort": ""}
        return {"text": f"{v:.4g}", "sort": repr(v)}
    if v is None:
        return {"text": "n/a", "sort": ""}
    return {"text": str(v), "sort": str(v)}


def _inline_figures(markdown: str, folder: Path) -> str:
    """``![x](name.png)`` -> a data: URI, so the page needs no file beside it."""
    def embed(m: re.Match) -> str:
        path = folder / m.group(2)
        if not re.fullmatch(r"[\w.-]+\.png", m.group(2)) or not path.is_file():
            return m.group(0)
        return f"![{m.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", embed, markdown)


def render(folder: Path, title: str, description: str, a: dict, markdown: str, in_progress: str | None = None) -> str:
    import jinja2
    from markdown_it import MarkdownIt

    env = jinja2.Environment(loader=jinja2.PackageLoader("moe_ablate.analysis", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    head = a.get("headline") or {"text": a.get("answer", ""), "caveats": []}
    columns = ["", "config_id", *a["axes"], "n", "mean", "ci95", "raw_mean", "n_failed", "failure_rate"]
    columns = [c for c in columns if c == "" or any(c in r for r in a["configurations"])]
    rows = [{"recommended": bool(r[""]), "cells": [_cell(r.get(c)) for c in columns]}
            for r in ordered_configurations(a)]
    sections = markdown.split("\n## ")[1:]  # the title's section (before the first "## ") is the page's header
    rest = "\n".join("## " + x for x in sections if not x.startswith(("Answer", "What this holds for")))
    html_body = MarkdownIt("commonmark", {"html": False}).enable("table").render(_inline_figures(rest, folder))
    return env.get_template("report.html.j2").render(
        title=title, description=description, in_progress=in_progress, answer=head["text"],
        caveats=head.get("caveats", []), settings=a.get("settings") or [], metric=a["metric"],
        columns=columns, rows=rows, body=html_body)
