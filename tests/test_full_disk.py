"""A real full filesystem, not an injected error: a small tmpfs, filled to a chosen number of free bytes,
under ``train``, a study (records, figures, report), a long run's checkpoints and the token cache. Each
must end in one line naming the file and exit 2, leave no temporary file, and leave earlier files as
they were. Skipped where this machine does not permit mounting (needs root, or CAP_SYS_ADMIN)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import write_study

pytestmark = pytest.mark.slow  # real mounts and separate processes

TINY = ["--eval-batches", "1", "--num-documents", "300", "--max-tokens", "60000", "--vocab-size", "512",
        "--batch-size", "4", "--seq-len", "32", "--no-progress"]


class SmallDisk:
    """A tmpfs at ``root``; ``leave(n)`` fills it so that about ``n`` bytes stay free."""

    def __init__(self, root: Path, size_kib: int):
        self.root = root
        root.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(root)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")

    def free(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def leave(self, n: int) -> None:
        filler = self.root / "filler"
        filler.write_bytes(b"")
        with open(filler, "ab") as f:
            f.write(b"\0" * max(0, self.free() - n))

    def make_room(self) -> None:
        (self.root / "filler").unlink(missing_ok=True)

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes() for p in self.root.rglob("*")
                if p.is_file() and p.name not in ("filler", ".lock")}

    def temporaries(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def disk(tmp_path):
    d = SmallDisk(tmp_path / "disk", 8 * 1024)
    yield d
    subprocess.run(["umount", str(d.root)], check=False)


def moe_ablate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moe_ablate", *args], capture_output=True, text=True, timeout=600)


def one_line(done: subprocess.CompletedProcess, names: str) -> str:
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in err if line.startswith("moe-ablate: error")]
    assert len(errors) == 1 and err[-1] == errors[0], err[-5:]
    assert "No space left on device" in errors[0] and names in errors[0], errors[0]
    return errors[0]


def test_train_on_a_full_disk_is_one_line_and_leaves_earlier_files(disk, cache_dir):
    (disk.root / "earlier").mkdir()
    (disk.root / "earlier" / "result.json").write_text('{"val_loss": 3.2}\n')
    before = disk.snapshot()
    disk.leave(64 * 1024)  # the JSON files fit, the model (about 0.5 MB) does not
    done = moe_ablate("train", "--preset", "tiny", "--steps", "2", "--eval-every", "2", "--cache-dir", str(cache_dir),
                      "--output-dir", str(disk.root / "run"), *TINY)
    one_line(done, str(disk.root / "run" / "final_model.pt"))
    assert not disk.temporaries() and not (disk.root / "run" / "final_model.pt").exists()
    assert {k: v for k, v in disk.snapshot().items() if k.startswith("earlier")} == before


def test_a_study_on_a_full_disk_is_one_line_and_resumes_when_there_is_room(disk, tmp_path, cache_dir):
    cfg = write_study(tmp_path, cache_dir, steps=4, lrs="[0.01, 0.05]")
    args = ["run", "--config", str(cfg), "--output-dir", str(disk.root), "--name", "s", "--no-progress"]
    disk.leave(24 * 1024)  # config.json and the first record fit, the rest does not
    one_line(moe_ablate(*args), str(disk.root / "s"))
    assert not disk.temporaries()
    kept = disk.snapshot()
    records = {k for k in kept if k.startswith("s/experiments/")}
    disk.make_room()
    done = moe_ablate("run", "--resume", str(disk.root / "s"), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    after = disk.snapshot()
    assert all(after[k] == kept[k] for k in records)  # finished experiments kept as they were, not rerun
    assert len([k for k in after if k.startswith("s/experiments/")]) == 4 and "s/report.md" in after


def test_a_long_run_whose_checkpoint_does_not_fit_is_one_line(disk, cache_dir):
    disk.leave(256 * 1024)  # the study's JSON fits; a checkpoint (model + optimizer state) does not
    done = moe_ablate("train", "--exp", "9", "--lr", "1e-3", "--preset", "tiny", "--steps", "6",
                      "--checkpoint-every", "3", "--cache-dir", str(cache_dir), "--output-dir", str(disk.root), *TINY)
    one_line(done, "checkpoint_step_3.pt")
    assert not disk.temporaries()
    run = next(disk.root.glob("exp9_long_term_*"))
    assert not list((run / "experiments").glob("*.json"))  # a disk error is never recorded as a model failure


def test_the_token_cache_on_a_full_disk_is_one_line(disk, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(f"paragraph {i} about the {i % 5} red foxes and {i % 7} dogs" for i in range(4000)))
    disk.leave(32 * 1024)  # the tokenizer fits, the token file does not
    done = moe_ablate("data", "prepare", "--data", str(text), "--vocab-size", "300", "--cache-dir", str(disk.root))
    one_line(done, str(disk.root))
    assert not disk.temporaries()
    disk.make_room()
    done = moe_ablate("data", "prepare", "--data", str(text), "--vocab-size", "300", "--cache-dir", str(disk.root))
    assert done.returncode == 0, done.stderr[-2000:]  # with room, the same command prepares it
