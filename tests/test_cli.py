"""Bad input: one line on stderr, exit code 2, nothing written."""

import json
import subprocess
import sys

import pytest

from moe_ablate.cli import main


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, message", [
    (["train", "--steps", "0"], "must be positive"),
    (["train", "--steps", "ten"], "expected an integer"),
    (["train", "--muon-lr", "-0.1"], "must be in (0, 1000]"),
    (["train", "--muon-lr", "1e300"], "must be in (0, 1000]"),
    (["train", "--seed", str(2**64)], "must be in [0, 2**32)"),
    (["train", "--data", ""], "the data source is empty"),
    (["train", "--batch-size", "0"], "must be positive"),
    (["train", "--preset", "huge"], "unknown preset"),
    (["train", "--top-k", "9", "--num-experts", "8"], "top_k"),
    (["train", "--data", "/no/such/file.txt"], "does not exist"),
    (["train", "--data", "corpus.docx"], "unknown data source"),
    (["train", "--model", "gpt"], "unknown model"),
    (["train", "--device", "tpu"], "device"),
    (["run", "--config", "/no/such.toml"], "study config not found"),
    (["lr-search", "--halving", "1"], "must be in [2, 1000]"),  # ETA 1 keeps every configuration: no halving
    (["lr-search", "--lrs", *(f"{1e-5 * (i + 1):.6g}" for i in range(1001))], "at most 1000"),
    (["analyze", "--results-dir", "/no/such/dir"], "results folder not found"),
    (["analyze", "/no/such/dir"], "results folder not found"),
    (["analyze"], "analyze needs a study folder"),
    (["analyze", "/a", "--results-dir", "/b"], "two study folders given"),
])
def test_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args + (["--output-dir", str(tmp_path / "out")] if args[0] != "analyze" else []),
                             capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moe-ablate: error:") and message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "ablation_results").exists()


def test_offline_hub_source_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code, _, err = run_cli(["train", "--data", "hf:HuggingFaceTB/smollm-corpus:cosmopedia-v2",
                            "--output-dir", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "hub" in err
    assert not (tmp_path / "o").exists()


def test_train_writes_result_config_and_model(tmp_path, cache_dir):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "moe_ablate", "train", "--preset", "tiny", "--steps", "6", "--eval-every", "3",
         "--batch-size", "4", "--seq-len", "32", "--num-documents", "300", "--max-tokens", "60000",
         "--vocab-size", "512", "--cache-dir", str(cache_dir), "--output-dir", str(out), "--device", "cpu"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 6
    for key in ("final_train_loss", "val_loss", "val_accuracy", "val_perplexity", "best_val_loss", "tokens_seen",
                "wall_time_s", "tokens_per_s", "params", "device", "seed", "data", "history"):
        assert key in result, key
    assert result["data"]["tokenizer_sha256"]
    assert (out / "config.json").exists() and (out / "final_model.pt").exists()
    # an existing output folder is never overwritten
    again = subprocess.run([sys.executable, "-m", "moe_ablate", "train", "--output-dir", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_ray_executor_without_ray_says_how_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if not installed
    code, _, err = run_cli(["run", "--quick", "--executor", "ray", "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and err.strip() == "moe-ablate: error: --executor ray needs Ray: pip install 'moe-ablate[ray]'"
    assert not any(tmp_path.iterdir())
