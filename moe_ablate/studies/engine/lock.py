"""One writer per study folder: an OS-level lock on ``<study>/.lock``.

``fcntl.flock`` is released by the kernel when the process dies, so a SIGKILLed run never leaves a
stale lock; the file's text (pid, host, time) only serves the message a second process prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

from ...errors import UserError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def study_lock(study_dir: Path, action: str = "resuming"):
    study_dir.mkdir(parents=True, exist_ok=True)
    try:  # never through a symlink: a planted .lock -> ~/notes.txt would otherwise be truncated
        fd = os.open(study_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        raise UserError(f"{study_dir / LOCK_FILE} is not a lock file this tool made ({e.strerror}); "
                        "remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{study_dir / LOCK_FILE} is not a regular file; remove it")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            raise UserError(f"{study_dir} is in use by {holder}; wait for it to finish (or stop it) before "
                            f"{action}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
