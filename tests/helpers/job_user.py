"""A worker's folder that its jobs' user may enter.

A worker started as root the way AWS Batch starts one runs its jobs as another user
(hyper.worker.identity); pytest's temporary folders are root's alone (/tmp/pytest-of-root
is 0700), so a test that runs such a worker as root gives it a folder of its own here."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def passable_folder(prefix: str = "hyper-worker-") -> Iterator[Path]:
    """A new folder under /tmp, 0755, removed with what is in it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
