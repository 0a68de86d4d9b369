"""Content hashes of source files, streamed (big files are fine), with a shortcut for unchanged files.

The token cache and a study's data identity use the *content* of the files, so a file rewritten
with text of the same length, or copied with ``cp -p``/``rsync -t``, is never mistaken for the old
one. Hashing a big file again on every run would be slow, so an unchanged file's hash is reused
when its (size, mtime_ns, ctime_ns, inode) match the recorded ones and the file was not modified
within the last two seconds (a write in the same timestamp tick could hide behind an equal mtime,
the "racy git" problem): in any doubt the file is hashed again. The ctime is what makes this safe
against ``cp -p new old`` or ``touch -r``: they restore the mtime, but any write or ``utime`` sets
the ctime to now, and no user call can set it back (git's index keys on it for the same reason).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..utils import atomic_write_json

CHUNK = 1 << 20
RACY_SECONDS = 2.0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(files: list[Path], cache_dir: Path, shortcut: bool = True) -> str:
    """One hash over the files' contents (and their names relative order), using the shortcut index unless
    ``shortcut`` is False (the check after a preparation: the bytes as they are now, whatever the stamps say)."""
    index_path = cache_dir / "file_hashes.json"
    try:
        index = json.loads(index_path.read_text()) if index_path.exists() else {}
    except (ValueError, OSError):
        index = {}
    if not isinstance(index, dict):  # a foreign or damaged index is only a lost shortcut
        index = {}
    total, changed = hashlib.sha256(), False
    for f in files:
        st = os.stat(f)
        key = str(Path(f).resolve())
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = index.get(key)
        fresh = time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < RACY_SECONDS
        if shortcut and isinstance(entry, dict) and entry.get("stamp") == stamp \
                and isinstance(entry.get("sha256"), str) and not fresh:
            digest = entry["sha256"]
        else:
            try:
                digest = file_sha256(f)
            except OSError as e:
                from ..errors import UserError

                raise UserError(f"cannot read {f}: {e.strerror or e}") from None
            index[key], changed = {"stamp": stamp, "sha256": digest}, True
        total.update(f"{Path(f).name}\0{digest}\0".encode())
    if changed:
        try:
            atomic_write_json(index_path, index)
        except OSError:
            pass  # only a shortcut: without it we hash again next time
    return total.hexdigest()
