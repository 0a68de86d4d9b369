"""Where tokenizers and token arrays are cached: one folder per user by default, so the same corpus is tokenised
once whichever folder a study is started from. ``data.cache_dir`` (``--cache-dir``) names another; empty means
``$MOE_ABLATE_CACHE`` when set, else the platform's user cache folder (``platformdirs``: ``~/.cache/moe-ablate``
on Linux, ``~/Library/Caches/moe-ablate`` on macOS)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "MOE_ABLATE_CACHE"


def cache_root(cache_dir: str = "") -> Path:
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("moe-ablate", appauthor=False))
