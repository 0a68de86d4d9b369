"""Small shared helpers: atomic JSON files, provenance (git, versions), device choice."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from . import failpoints
from .errors import UserError

TMP_SUFFIX = ".moe-ablate.tmp"  # temporaries are ".<name>.<random>.moe-ablate.tmp": only these are ever removed


def _clean(obj: Any) -> Any:
    """Make an object strict-JSON safe: non-finite floats become null, numpy scalars plain."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _clean(obj.item())
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """The one way this project writes a file: ``write(f)`` into a uniquely named temporary file in the
    same folder, fsync, then rename over ``path``. Readers never see half a file; on any failure the
    temporary file is removed and an existing ``path`` is untouched. The file gets the permissions
    of any normally created file (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: a shared folder (the data cache) removes only the temporaries of dead writers
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        failpoints.reached("write:before_rename")
        os.replace(tmp, path)
        failpoints.reached("write:after_rename")
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if (cause := _os_error_in(e)) is not None:  # name the file the user knows, not the temporary one
            raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from None
        if isinstance(e, RuntimeError) and "writ" in str(e).lower():  # torch's zip writer failed on its own
            full = shutil.disk_usage(path.parent).free < 1 << 20
            raise OSError(errno.ENOSPC if full else errno.EIO, "No space left on device" if full
                          else f"write failed ({str(e).splitlines()[0][:120]})", str(path)) from None
        raise


def remove_dead_writers_temporaries(folder: Path, min_age_s: float = 600.0) -> int:
    """Temporaries of atomic writes in ``folder`` whose writer is gone (killed by SIGTERM or SIGKILL before it
    could remove its own): its pid no longer runs here, and the file has not changed for ``min_age_s`` (a writer
    on another machine sharing the folder keeps its file changing). For folders without a lock (the data cache)."""
    n = 0
    for p in Path(folder).glob(f".*{TMP_SUFFIX}"):
        parts = p.name[: -len(TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue  # alive under another user, or not a pid
        with contextlib.suppress(OSError):
            if time.time() - p.stat().st_mtime >= min_age_s:
                p.unlink()
                n += 1
    return n


def _os_error_in(e: BaseException | None) -> OSError | None:
    """The OSError behind ``e``: itself, or one it was raised from or while handling. A full disk under
    ``torch.save`` surfaces as the zip writer's ``RuntimeError: unexpected pos`` raised while handling
    the ``OSError: [Errno 28]`` of the write that failed."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or corrupt file is a UserError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"corrupt JSON in {path}: {e}") from None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def git_commit() -> str | None:
    """The commit of the moe_ablate checkout, if it is one (None for an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def software_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for pkg in ("moe-ablate", "torch", "numpy", "transformers", "tokenizers", "datasets", "pandas"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available on this machine")
    return name
