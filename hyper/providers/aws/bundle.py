"""The Lambda code bundle: the installed ``hyper`` package and its runtime dependencies
as Linux wheels, in one zip.

- The package is copied from where Python imports it (an editable install reads the
  working tree; a normal one, site-packages), without ``__pycache__``.
- The dependencies are the distribution's own requirements (its extras left out) but
  for what Lambda's Python has (boto3, botocore) and what the host never runs there: the
  CLI (typer, rich, questionary) and the local daemon's server (uvicorn, with its
  uvloop, httptools, watchfiles, websockets). pip fetches them for Lambda's Linux and
  Python (``--platform manylinux2014_x86_64 --only-binary=:all:``), pinned to the
  versions installed here whenever those are installed, so the function runs what was
  tested.
- The zip is deterministic: files in name order, one timestamp (1980-01-01), one mode,
  no compiled files and no scripts (their shebang names this machine's Python). The
  same inputs give the same bytes, and the file is named after their SHA-256, so its
  name tells whether the code changed (use it as the template's ``code_key``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from hyper import commands
from hyper.errors import HyperError
from hyper.providers.aws.templates import LAMBDA_PYTHON

DISTRIBUTION = "hyper-scheduler"
PACKAGE = "hyper"
PLATFORM = "manylinux2014_x86_64"
# Lambda's Python runtime has these
PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
# the host never runs these on Lambda: the CLI and the local daemon's HTTP server
NOT_ON_LAMBDA = frozenset({"typer", "rich", "questionary", "uvicorn"})
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # a regular file, rw-r--r--
LEFT_OUT_DIRS = frozenset({"__pycache__", "bin"})
LEFT_OUT_SUFFIXES = (".pyc", ".pyo")


def build_bundle(dest: Path, *, python_version: str = LAMBDA_PYTHON, timeout: float = 900) -> Path:
    """Build the bundle into directory `dest`; the zip's path, named by its SHA-256."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hyper-bundle-") as work:
        site = Path(work) / "site"
        constraints = Path(work) / "constraints.txt"
        constraints.write_text("".join(f"{line}\n" for line in installed_versions()))
        commands.run(
            [
                sys.executable, "-m", "pip", "install",
                "--target", str(site),
                "--platform", PLATFORM,
                "--implementation", "cp",
                "--python-version", python_version,
                "--only-binary=:all:",
                "--no-compile",
                "--no-input",
                "--disable-pip-version-check",
                "--quiet",
                "--constraint", str(constraints),
                *runtime_requirements(),
            ],
            timeout=timeout,
        )  # fmt: skip
        files = dict(tree_files(site))
        files.update(tree_files(package_dir(), prefix=f"{PACKAGE}/"))
        partial = dest / f".hyper-lambda-{os.getpid()}.zip"
        write_zip(files.items(), partial)
    digest = file_digest(partial)
    final = dest / f"hyper-lambda-{digest[:16]}.zip"
    partial.replace(final)
    return final


def runtime_requirements() -> list[str]:
    """What the installed distribution requires to run, as pip takes it, but for what
    Lambda has and what the host does not run there."""
    try:
        required = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise HyperError(f"{DISTRIBUTION} is not installed: install it to bundle it") from None
    kept = []
    for requirement in required:
        if re.search(r"""\bextra\s*==""", requirement):
            continue
        if _name(requirement) in PROVIDED | NOT_ON_LAMBDA:
            continue
        kept.append(requirement)
    return kept


def installed_versions() -> list[str]:
    """`name==version` of every distribution installed here but ours, sorted: pip takes
    these versions for the bundle whenever it needs those packages."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _name(name) != _name(DISTRIBUTION) and dist.version:
            pins[_name(name)] = f"{_name(name)}=={dist.version}"
    return sorted(pins.values())


def package_dir() -> Path:
    return Path(__file__).resolve().parents[2]  # hyper/, from hyper/providers/aws/


def tree_files(root: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """(name in the zip, file) for the files under `root`, but compiled files, caches
    and scripts."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.name.endswith(LEFT_OUT_SUFFIXES):
            continue
        if LEFT_OUT_DIRS & set(relative.parts[:-1]):
            continue
        yield prefix + relative.as_posix(), path


def write_zip(files: Iterable[tuple[str, Path]], out: Path) -> None:
    """A zip of `files` whose bytes depend only on their names and contents."""
    with zipfile.ZipFile(out, "w") as bundle:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = FILE_MODE << 16
            info.create_system = 3  # Unix, so the mode above counts
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, path.read_bytes(), compresslevel=9)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name(requirement: str) -> str:
    """The normalised project name a requirement starts with (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement
