"""The build context of a worker image: the user's folder plus a wheel of this hyper.

`hyper images add-image --local-build-directory DIR` builds DIR's Dockerfile with DIR as
the build context, and a Dockerfile may COPY only what its context holds. A worker image
needs the hyper package (the worker agent, with its ``aws`` extra), which is not in DIR and,
for a ``pip install``ed hyper, in no folder of the user's either. So the context docker
gets is a temporary folder holding:

- every file of DIR (its Dockerfile, ``start.sh``, anything else it COPYs), and
- ``hyper_scheduler-VERSION-py3-none-any.whl``: a wheel of the hyper installed here (the
  ``hyper`` and ``qtools`` packages as Python imports them, with the installed
  distribution's metadata, so its requirements and extras are the installed ones).

A Dockerfile installs it with ``COPY hyper_scheduler-*.whl /tmp/hyper/`` and
``pip install "$(ls /tmp/hyper/*.whl)[aws]"``, as example-worker-image/Dockerfile does.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hyper.errors import DeployFailed
from hyper.providers.aws.bundle import (
    DISTRIBUTION,
    FILE_MODE,
    ZIP_TIME,
    package_dir,
    tree_files,
)

PACKAGES = ("hyper", "qtools")  # setup.cfg's [options.packages.find]
WHEEL_FILE = "Wheel-Version: 1.0\nGenerator: hyper\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel_name(version: str) -> str:
    project = DISTRIBUTION.replace("-", "_")
    return f"{project}-{version}-py3-none-any.whl"


def write_wheel(dest: Path) -> Path:
    """A wheel of the installed hyper in folder `dest`; its path."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DeployFailed(f"{DISTRIBUTION} is not installed: install it to build images") from None
    metadata = _metadata(dist)
    info = f"{DISTRIBUTION.replace('-', '_')}-{dist.version}.dist-info"
    contents: dict[str, bytes] = {}
    for package in PACKAGES:
        for name, path in tree_files(_package_folder(package), prefix=f"{package}/"):
            contents[name] = path.read_bytes()
    contents[f"{info}/METADATA"] = metadata.encode()
    contents[f"{info}/WHEEL"] = WHEEL_FILE.encode()
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        contents[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [
        f"{name},sha256={_digest(data)},{len(data)}" for name, data in sorted(contents.items())
    ]
    contents[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / wheel_name(dist.version)
    with zipfile.ZipFile(out, "w") as wheel:
        for name, data in sorted(contents.items()):
            entry = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            entry.external_attr = FILE_MODE << 16
            entry.create_system = 3
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, data)
    return out


@contextmanager
def build_context(folder: Path) -> Iterator[Path]:
    """A temporary build context: the files of `folder` and a wheel of this hyper; removed
    on leaving."""
    if not (folder / "Dockerfile").is_file():
        raise DeployFailed(f"{folder} has no Dockerfile")
    with tempfile.TemporaryDirectory(prefix="hyper-image-") as work:
        context = Path(work) / "context"
        shutil.copytree(folder, context, symlinks=True)
        for stale in context.glob(wheel_name("*")):  # one of ours left in the folder
            stale.unlink()
        write_wheel(context)
        yield context


def _metadata(dist: importlib.metadata.Distribution) -> str:
    """The wheel's METADATA from the installed distribution's (a wheel install's METADATA
    or a checkout's egg-info alike): name, version, Python and requirements with extras."""
    requires = dist.requires or []
    extras = sorted(set(re.findall(r"""\bextra\s*==\s*["']([^"']+)["']""", " ".join(requires))))
    lines = ["Metadata-Version: 2.1", f"Name: {dist.metadata['Name']}", f"Version: {dist.version}"]
    for field in ("Summary", "Requires-Python"):
        value = dist.metadata[field]  # None when the field is not there
        if value:
            lines.append(f"{field}: {value}")
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return "\n".join(lines) + "\n"


def _package_folder(package: str) -> Path:
    if package == "hyper":
        return package_dir()
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DeployFailed(f"package {package} is not installed: install hyper to build images")
    return Path(next(iter(spec.submodule_search_locations)))


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
