"""HellaSwag scored the way EleutherAI's lm-evaluation-harness scores it (task ``hellaswag``).

Scoring rule, per item:
- query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
- choices = preprocess(ending) for the four endings; each is scored as the continuation " " + choice
- score = summed log-likelihood of the continuation tokens given the query (context and
  continuation tokenised the harness's way: encode(query + continuation) minus encode(query))
- acc = argmax of the sums; acc_norm = argmax of sum / len(choice) in characters (the harness
  divides by the length of the choice string, without the leading space)
Contexts longer than the model's window are cut from the left; the ending is never cut.

Written here rather than calling ``lm_eval`` because lm_eval is an optional, heavy dependency and
the long-training loop needs an in-process evaluator; ``tests/test_hellaswag.py`` compares the
two when lm_eval is installed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data.tokenizer import LoadedTokenizer
from .errors import UserError

PROTOCOL = "lm-evaluation-harness hellaswag (0-shot; acc = argmax sum loglik, acc_norm = / len(choice chars))"


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")  # WikiHow artefacts
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


@dataclass
class Item:
    query: str
    choices: list[str]
    label: int
    ind: Any = None


FORMATS = ("the official one (activity_label, ctx_a, ctx_b, endings, label)",
           "the context in one field (ctx, endings, label; activity_label optional)",
           "lm-evaluation-harness's preprocessed one (query, choices, gold)")


def to_item(doc: dict) -> Item:
    """One item in any of ``FORMATS``, checked: text fields are text, at least two endings, each a text, and the
    label an integer index of one of them (a string like "2" is accepted, as the official files have it). Every
    missing or malformed field is named at once.

    The official form's context is ``ctx_a + " " + ctx_b.capitalize()`` (the harness's rule); a ``ctx`` field is
    taken as written, and a harness ``query`` is already preprocessed, so each form scores what the harness scores
    for the text it holds."""
    if not isinstance(doc, dict):
        raise ValueError("an item must be a JSON object")
    if "query" in doc and "ctx_a" not in doc and "ctx" not in doc:
        text, endings_key, label_key, form = ("query",), "choices", "gold", 2
    elif "ctx" in doc and not ("ctx_a" in doc and "ctx_b" in doc):
        text, endings_key, label_key, form = ("ctx",), "endings", "label", 1
    else:
        text, endings_key, label_key, form = ("activity_label", "ctx_a", "ctx_b"), "endings", "label", 0
    problems = [f"{k!r} must be text, got {doc.get(k)!r:.40}" if k in doc else f"{k!r} is missing"
                for k in text if not isinstance(doc.get(k), str)]
    if form == 1 and "activity_label" in doc and not isinstance(doc["activity_label"], str):
        problems.append(f"'activity_label' must be text, got {doc['activity_label']!r:.40}")
    endings = doc.get(endings_key)
    if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) for e in endings):
        problems.append(f"{endings_key!r} must be a list of at least two texts, got {endings!r:.60}"
                        if endings_key in doc else f"{endings_key!r} is missing")
        endings = None
    label = doc.get(label_key)
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or (endings and not 0 <= label < len(endings)):
        problems.append(f"{label_key!r} is missing" if label_key not in doc else
                        f"{label_key!r} must be an integer index of the {len(endings or [])} endings, got "
                        f"{doc.get(label_key)!r:.40}")
    if problems:
        raise ValueError("; ".join(problems) + f" (formats: {'; '.join(FORMATS)})")
    if form == 2:
        return Item(doc["query"], list(endings), label, doc.get("ind"))
    if form == 1:
        ctx = doc["ctx"] if not doc.get("activity_label") else doc["activity_label"] + ": " + doc["ctx"]
        return Item(preprocess(ctx), [preprocess(e) for e in endings], label, doc.get("ind"))
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return Item(preprocess(doc["activity_label"] + ": " + ctx), [preprocess(e) for e in endings], label, doc.get("ind"))


def load_items(source: str, limit: int | None = None) -> list[Item]:
    """Official JSONL format from a local file, or ``hf:Rowan/hellaswag`` (validation split)."""
    if source.startswith("hf:"):
        from .data.sources import ensure_hub

        ensure_hub(source, "HellaSwag sources: a local JSONL file (e.g. hellaswag_val.jsonl from "
                           "github.com/rowanz/hellaswag/tree/master/data) or hf:Rowan/hellaswag with the hub")
        import datasets

        try:
            ds = datasets.load_dataset(source[3:], split="validation")
        except Exception as e:
            raise UserError(f"cannot load {source}: {type(e).__name__}") from None
        docs = ds.select(range(min(len(ds), limit or len(ds))))
    else:
        path = Path(source)
        if not path.is_file():  # a FIFO or a device would block or never end
            raise UserError(f"HellaSwag file {source} is not a regular file" if path.exists()
                            else f"HellaSwag file not found: {source}")
        docs = []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{source}: not UTF-8 text (byte {e.start})") from None
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UserError(f"{source}:{n}: not valid JSON") from None
            if limit and len(docs) >= limit:
                break
    items = []
    for n, d in enumerate(docs, 1):
        try:
            items.append(to_item(d))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise UserError(f"{source}: item {n} is not in the HellaSwag format: {e}") from None
    if not items:
        raise UserError(f"{source}: no HellaSwag items")
    return items


def encode_pair(tok: LoadedTokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The harness's split: trailing context spaces move to the continuation; the continuation's
    tokens are those of encode(context + continuation) after encode(context)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
    whole = tok.encode(context + continuation)
    ctx = tok.encode(context)
    return ctx, whole[len(ctx):]


def choose(logliks: list[float], choices: list[str]) -> tuple[int, int]:
    """(acc prediction, acc_norm prediction) for one item."""
    acc = max(range(len(logliks)), key=lambda i: logliks[i])
    norm = max(range(len(logliks)), key=lambda i: logliks[i] / max(1, len(choices[i])))
    return acc, norm


@torch.no_grad()
def score_requests(model, requests: list[tuple[list[int], list[int]]], max_len: int, batch_size: int,
                   device: str) -> list[float]:
    """Summed log-probabilities of each continuation given its context, several per forward pass.

    Requests are batched longest first (as the harness does) so little compute goes to padding;
    results come back in the order asked.
    """
    model.eval()
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]) - len(requests[i][1]))
    out: list[float] = [0.0] * len(requests)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        chunk = [requests[i] for i in idx]
        seqs, spans = [], []
        for ctx, cont in chunk:
            if len(cont) > max_len:
                raise UserError(f"an ending of {len(cont)} tokens does not fit the model's window of {max_len}")
            full = (ctx + cont)[-(max_len + 1):]  # cut the context from the left, never the ending
            inp = full[:-1]
            seqs.append(inp)
            spans.append((len(inp) - len(cont), len(inp), cont))
        width = max(len(s) for s in seqs)
        x = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: causal attention never looks at it
            x[i, : len(s)] = torch.tensor(s)
        logits, _ = model(x.to(device))
        logp = F.log_softmax(logits.float(), dim=-1)
        sums = [logp[i, a:b].gather(-1, torch.tensor(cont, device=logp.device)[:, None]).sum()
                for i, (a, b, cont) in enumerate(spans)]
        for i, v in zip(idx, torch.stack(sums).tolist(), strict=True):  # one host sync per batch
            out[i] = v
    return out


def wilson(k: int, n: int) -> list[float]:
    """95% Wilson interval of an accuracy of k in n: honest at small n and near 0 or 1, where the normal
    approximation would leave [0, 1]."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return [float(lo), float(hi)]


class HellaSwagEvaluator:
    """Callable evaluator: ``evaluator(model) -> {"acc", "acc_norm", "n", ...}`` (used by training)."""

    def __init__(self, source: str, tokenizer: LoadedTokenizer, max_len: int, limit: int | None = None,
                 batch_size: int = 16, device: str = "cpu"):
        self.source, self.items = source, load_items(source, limit)
        self.max_len, self.batch_size, self.device = max_len, batch_size, device
        self.requests = [encode_pair(tokenizer, it.query, " " + c) for it in self.items for c in it.choices]

    def __call__(self, model, with_predictions: bool = False) -> dict[str, Any]:
        was_training = model.training
        t0 = time.perf_counter()
        lls = score_requests(model, self.requests, self.max_len, self.batch_size * 4, self.device)
        model.train(was_training)
        preds, k = [], 0
        acc = norm = 0
        for it in self.items:
            n = len(it.choices)
            a, b = choose(lls[k:k + n], it.choices)
            acc += a == it.label
            norm += b == it.label
            if with_predictions:
                preds.append({"ind": it.ind, "label": it.label, "pred": a, "pred_norm": b,
                              "logliks": lls[k:k + n]})
            k += n
        elapsed = time.perf_counter() - t0
        n = len(self.items)
        result = {"acc": acc / n, "acc_norm": norm / n, "n": n,
                  "acc_ci95": wilson(acc, n), "acc_norm_ci95": wilson(norm, n),
                  "chance": sum(1 / len(it.choices) for it in self.items) / n,
                  "protocol": PROTOCOL, "data": self.source, "time_s": elapsed,
                  "items_per_s": len(self.items) / elapsed if elapsed > 0 else None}
        if with_predictions:
            result["predictions"] = preds
        return result
