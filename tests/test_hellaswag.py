import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from moe_ablate.config import apply_overrides, preset_config
from moe_ablate.data.corpus import builtin_documents
from moe_ablate.errors import UserError
from moe_ablate.hellaswag import HellaSwagEvaluator, choose, load_items, preprocess
from moe_ablate.models import build_model
from moe_ablate.training import train

FIXTURE = str(Path(__file__).parent / "fixtures" / "hellaswag_mini.jsonl")


def test_preprocess_follows_the_harness_rules():
    # strip first, then " [title]" -> ". ", then tags removed, then double spaces collapsed once
    assert preprocess(" [header] How to make a bird feeder [title] Gather  your materials. ") == \
        " How to make a bird feeder. Gather your materials."
    assert preprocess("[substeps] Tie a string.") == " Tie a string."
    assert preprocess("a  b") == "a b"
    items = load_items(FIXTURE)
    assert items[0].query == ("Removing ice from car: Then, the man writes over the snow covering the window of a car, "
                              "and a woman wearing winter clothes smiles. Then")
    # ctx_b.capitalize() lower-cases the rest of ctx_b, as in the harness
    assert items[2].query == ("Home and Garden: How to make a bird feeder. Gather your materials. you will need a pine "
                              "cone, peanut butter and birdseed.")
    assert items[2].choices[2] == " Paint the cone bright red. Let it dry."
    assert [it.label for it in items] == [3, 3, 0, 0]


def test_acc_and_acc_norm_can_disagree():
    # the long ending has a lower sum but a higher per-character log-likelihood
    choices = ["short.", "a much longer ending with many more characters in it."]
    assert choose([-10.0, -12.0], choices) == (0, 1)


@pytest.fixture(scope="module")
def model_and_tok(cache_dir):
    from moe_ablate.data import prepare_data

    cfg = apply_overrides(preset_config("tiny"), {"data.cache_dir": str(cache_dir), "train.device": "cpu"})
    data = prepare_data(cfg.data, log=lambda m: None)
    cfg.model.vocab_size = data.vocab_size
    torch.manual_seed(0)
    return cfg, data


def test_scores_equal_an_independent_per_ending_computation(model_and_tok):
    cfg, data = model_and_tok
    tok = data.tokenizer
    model = build_model(cfg.model).eval()
    ev = HellaSwagEvaluator(FIXTURE, tok, cfg.model.max_seq_len, batch_size=3)
    got = ev(model, with_predictions=True)["predictions"]
    for item, pred in zip(ev.items, got):
        for choice, ll in zip(item.choices, pred["logliks"]):
            ctx = tok.encode(item.query)
            whole = tok.encode(item.query + " " + choice)
            cont = whole[len(ctx):]
            whole = whole[-(cfg.model.max_seq_len + 1):]  # the window cuts the context from the left
            with torch.no_grad():
                logits, _ = model(torch.tensor([whole[:-1]]))
            logp = F.log_softmax(logits[0].float(), -1)
            ref = sum(logp[len(whole) - 1 - len(cont) + j, t].item() for j, t in enumerate(cont))
            assert ll == pytest.approx(ref, abs=1e-3)


def make_items(tok, seed, n, path):
    """Items from the builtin corpus: the correct ending is the real rest of a sentence, the three
    wrong ones are rests of other sentences with the same number of tokens."""
    rng = random.Random(0)
    pool = []
    for d in builtin_documents(seed, 200):
        for s in (s for s in d.split(". ") if len(s.split()) >= 8):
            w = s.split()
            k = len(w) // 2
            pool.append((d[: d.index(s)] + " ".join(w[:k]), " ".join(w[k:]) + "."))
    by_len = {}
    for _, end in pool:
        by_len.setdefault(len(tok.encode(" " + end)), set()).add(end)
    rng.shuffle(pool)
    items = []
    for ctx, end in pool:
        same = sorted(by_len[len(tok.encode(" " + end))] - {end})
        if len(same) < 3:
            continue
        label = rng.randrange(4)
        wrong = rng.sample(same, 3)
        items.append({"ind": len(items), "activity_label": "Story", "ctx_a": ctx[-400:], "ctx_b": "",
                      "endings": wrong[:label] + [end] + wrong[label:], "label": label})
        if len(items) >= n:
            break
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    return path


def test_trained_model_beats_chance_and_untrained_does_not(model_and_tok, tmp_path):
    cfg, data = model_and_tok
    items = make_items(data.tokenizer, cfg.data.seed, 60, tmp_path / "items.jsonl")
    ev = HellaSwagEvaluator(str(items), data.tokenizer, cfg.model.max_seq_len)
    torch.manual_seed(0)
    untrained = ev(build_model(cfg.model))
    trained_cfg = apply_overrides(cfg, {"train.steps": 150})
    _, model = train(trained_cfg, data, progress=False, log=lambda m: None)
    trained = ev(model)
    assert untrained["n"] == trained["n"] == 60
    assert untrained["acc"] < 0.40  # chance is 0.25
    assert trained["acc"] > 0.50 and trained["acc_norm"] > 0.50


def test_hub_source_fails_fast_offline(model_and_tok, monkeypatch):
    cfg, data = model_and_tok
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub") as e:
        HellaSwagEvaluator("hf:Rowan/hellaswag", data.tokenizer, 128)
    assert "local JSONL file" in str(e.value) and "builtin" not in str(e.value)  # a real HellaSwag source
    assert time.perf_counter() - t0 < 5


def test_cli_scores_a_saved_model(tmp_path, cache_dir):
    out = tmp_path / "run"
    common = ["--cache-dir", str(cache_dir), "--num-documents", "300", "--max-tokens", "60000", "--vocab-size", "512"]
    subprocess.run([sys.executable, "-m", "moe_ablate", "train", "--model", "deepseek_mlp", "--preset", "tiny",
                    "--steps", "2", "--eval-every", "2", "--output-dir", str(out)] + common, check=True,
                   capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "moe_ablate", "hellaswag", "--checkpoint", str(out / "final_model.pt"),
                           "--data", FIXTURE, "--output", str(tmp_path / "hs.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "hs.json").read_text())
    assert res["n"] == 4 and len(res["predictions"]) == 4 and 0 <= res["acc"] <= 1
    assert res["chance"] == 0.25 and res["acc_ci95"][0] <= res["acc"] <= res["acc_ci95"][1]
    assert "chance 0.25" in proc.stdout and "95% CI" in proc.stdout
    assert "cannot be told from chance" in proc.stdout  # 4 items: every interval holds 0.25
    assert "lm-evaluation-harness" in res["protocol"] and res["checkpoint"].endswith("final_model.pt")


@pytest.mark.extras
def test_matches_lm_evaluation_harness_itself(model_and_tok, tmp_path, monkeypatch):
    """Optional (skipped unless lm_eval is installed): lm_eval builds the queries, splits context and
    continuation, and aggregates acc/acc_norm itself; it only asks our model for log-likelihoods."""
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.api.model import TemplateLM
    from lm_eval.tasks import TaskManager

    from moe_ablate.hellaswag import score_requests

    cfg, data = model_and_tok
    tok = data.tokenizer
    torch.manual_seed(1)
    model = build_model(cfg.model).eval()

    class OurLM(TemplateLM):
        eot_token_id = tok.eos_id

        def tok_encode(self, string, add_special_tokens=None, **kw):
            return tok.encode(string)

        def _loglikelihood_tokens(self, requests, **kw):
            lls = score_requests(model, [(c, t) for _, c, t in requests], cfg.model.max_seq_len, 16, "cpu")
            return [(ll, False) for ll in lls]

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def generate_until(self, requests, disable_tqdm=False):
            raise NotImplementedError

    items = make_items(tok, cfg.data.seed, 40, tmp_path / "items.jsonl")
    with open(items, "a") as f:  # plus the hand-written WikiHow/ActivityNet items
        f.write(Path(FIXTURE).read_text())
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "utils.py").write_text("from lm_eval.tasks.hellaswag.utils import process_docs  # noqa\n")
    (task_dir / "hellaswag_local.yaml").write_text(
        "task: hellaswag_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    validation: {items}\noutput_type: multiple_choice\nvalidation_split: validation\n"
        "process_docs: !function utils.process_docs\ndoc_to_text: \"{{query}}\"\ndoc_to_target: \"{{label}}\"\n"
        "doc_to_choice: \"choices\"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    out = simple_evaluate(model=OurLM(), tasks=["hellaswag_local"],
                          task_manager=TaskManager(include_path=str(task_dir)),
                          num_fewshot=0, log_samples=True)
    theirs = sorted(out["samples"]["hellaswag_local"], key=lambda s: s["doc_id"])
    ours = HellaSwagEvaluator(str(items), tok, cfg.model.max_seq_len)(model, with_predictions=True)
    assert len(theirs) == ours["n"] == 44
    assert [s["acc"] for s in theirs] == [float(p["pred"] == p["label"]) for p in ours["predictions"]]
    assert [s["acc_norm"] for s in theirs] == [float(p["pred_norm"] == p["label"]) for p in ours["predictions"]]
    res = out["results"]["hellaswag_local"]
    assert res["acc,none"] == pytest.approx(ours["acc"]) and res["acc_norm,none"] == pytest.approx(ours["acc_norm"])


def test_ctx_only_and_harness_preprocessed_items_score_the_same_as_the_official_format(model_and_tok, tmp_path):
    """The same items in the three formats: the official one, ``ctx`` in one field (as many mirrors ship it) and
    lm-evaluation-harness's ``process_docs`` output (query/choices/gold, written here by the harness's rule)."""
    cfg, data = model_and_tok
    docs = [json.loads(line) for line in Path(FIXTURE).read_text().splitlines() if line.strip()]
    ctx_form = [{"activity_label": d["activity_label"], "ctx": d["ctx_a"] + " " + d["ctx_b"].capitalize(),
                 "endings": d["endings"], "label": d["label"]} for d in docs]
    harness = [{"query": preprocess(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize()),
                "choices": [preprocess(e) for e in d["endings"]], "gold": int(d["label"])} for d in docs]
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    scores = []
    for name, rows in (("official", docs), ("ctx", ctx_form), ("harness", harness)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        res = HellaSwagEvaluator(str(path), data.tokenizer, cfg.model.max_seq_len)(model, with_predictions=True)
        scores.append(([p["logliks"] for p in res["predictions"]], res["acc"], res["acc_norm"]))
    assert scores[0] == scores[1] == scores[2]


def test_every_missing_field_is_named_at_once(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"endings": ["a", "b", "c", "d"]}) + "\n")
    with pytest.raises(UserError) as e:
        load_items(str(path))
    for field in ("'activity_label' is missing", "'ctx_a' is missing", "'ctx_b' is missing", "'label' is missing"):
        assert field in str(e.value)
    assert "query, choices, gold" in str(e.value)  # the formats it takes
