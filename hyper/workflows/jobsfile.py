"""The jobs file of a workflow: CfnCluster Step Functions' INI format, read and checked
before anything runs.

    [order]
    sequential = job1, banana, job2      # or: parallel = a, b, c (exactly one of the two)

    [job job1]
    handler = src/script.sh              # the file inside the package to run
    local_path = rel/or/abs              # or: s3_uri = s3://bucket/key-or-prefix (one of them)
    wait_time = 30                       # how often the host checks the job: 1-240 s, 10

Every mistake is one UsageError (exit 2) in the original's words where it had them, and
in words of the same kind where it crashed. `name` is read as `handler` when there is
no `handler` (the original's own README used it).
"""

from __future__ import annotations

import configparser
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from hyper.errors import UsageError
from hyper.jobs import escapes
from hyper.jobspec import check_job_name
from hyper.workflows.packaging import LocalSource, S3Source, Source

ORDERS = ("sequential", "parallel")
WAIT_TIME = 10
MIN_WAIT_TIME, MAX_WAIT_TIME = 1, 240
JOB_OPTIONS = ("handler", "local_path", "s3_uri", "wait_time")
MAX_JOBS = 500


@dataclass(frozen=True)
class JobSpec:
    name: str
    handler: str
    source: Source
    wait_time: int = WAIT_TIME


@dataclass(frozen=True)
class JobsFile:
    path: Path
    order: str  # sequential or parallel
    jobs: list[JobSpec]  # as the order lists them
    warnings: list[str] = field(default_factory=list)  # what was ignored, one line each


def load(path: Path) -> JobsFile:
    """Read and check a jobs file, the handlers inside their packages included (which
    lists S3 prefixes)."""
    jobs_file = read(path)
    for job in jobs_file.jobs:
        if not job.source.has(job.handler):
            raise UsageError(
                f"handler {job.handler!r} of [job {job.name}] is not a file in its package"
                f" ({job.source})"
            )
    return jobs_file


def read(path: Path) -> JobsFile:
    """Read a jobs file and check everything in it but the packages' contents."""
    if not path.is_file():
        raise UsageError(f"Must specify a real file for the jobs config ({path} is not one)")
    parser = _parse(path)
    warnings: list[str] = []
    if not parser.has_section("order"):
        raise UsageError(f"{path}: needs an [order] section with sequential or parallel")
    order, names = _order(parser["order"], warnings)
    sections: dict[str, configparser.SectionProxy] = {}
    for section in parser.sections():
        kind, *rest = section.split(None, 1) or [""]
        if kind == "job" and rest:
            sections[rest[0].strip()] = parser[section]
        elif section != "order":
            warnings.append(f"section [{section}] is not one hyper reads: ignored")
    for name in sections:
        if name not in names:
            warnings.append(f"[job {name}] is not in the order: it will not run")
    jobs = []
    for name in names:
        if name not in sections:
            raise UsageError(f"job {name!r} is in the order but there is no [job {name}] section")
        jobs.append(_job(name, sections[name], path.parent, warnings))
    return JobsFile(path, order, jobs, warnings)


def _parse(path: Path) -> configparser.ConfigParser:
    # no interpolation: a '%' in a path is a '%'; ';' and '#' start comments after a space
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    except configparser.MissingSectionHeaderError as error:
        raise UsageError(f"{path} line {error.lineno}: a line before any [section]") from None
    except configparser.ParsingError as error:
        lineno, line = error.errors[0]
        raise UsageError(f"{path} line {lineno}: cannot read {line.strip()!r}") from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as error:
        raise UsageError(f"{path} line {error.lineno}: {error.message.split(': ')[-1]}") from None
    return parser


def _order(section: configparser.SectionProxy, warnings: list[str]) -> tuple[str, list[str]]:
    given = [kind for kind in ORDERS if kind in section]
    if len(given) == 2:
        raise UsageError("Must specify sequential or parallel in [order], not both")
    if not given:
        raise UsageError("Need to specify sequential or parallel in the [order] section")
    kind = given[0]
    for option in section:
        if option != kind:
            warnings.append(f"option {option!r} of [order] is not one hyper reads: ignored")
    names = [name.strip() for name in section[kind].split(",")]
    if names == [""]:
        raise UsageError(f"{kind} in [order] lists no jobs")
    if "" in names:
        raise UsageError(f"{kind} in [order] has an empty job name (two commas, or one at an end)")
    if len(names) > MAX_JOBS:
        raise UsageError(f"{kind} in [order] lists {len(names)} jobs; a workflow runs {MAX_JOBS}")
    for name in names:
        check_job_name(name, f"job name {name!r} in [order]")
        if names.count(name) > 1:
            raise UsageError(f"job {name!r} is named twice in {kind}: a job runs once per workflow")
    return kind, names


def _job(
    name: str, section: configparser.SectionProxy, folder: Path, warnings: list[str]
) -> JobSpec:
    where = f"job {name}"
    handler = section.get("handler")
    if handler is None and "name" in section:
        handler = section["name"]
        warnings.append(f"[{where}]: 'name' read as 'handler', the documented option")
    for option in section:
        if option not in (*JOB_OPTIONS, "name"):
            warnings.append(f"option {option!r} of [{where}] is not one hyper reads: ignored")
    if not handler:
        raise UsageError(f"Need to specify handler in {where} section")
    local, s3 = section.get("local_path"), section.get("s3_uri")
    if local and s3:
        raise UsageError(f"Must specify s3_uri or local_path, not both (in {where} section)")
    if not (local or s3):
        raise UsageError(f"Need to specify s3_uri or local_path in {where} section")
    source: Source
    if local:
        path = folder / Path(local).expanduser()  # an absolute path stays as it is
        if not path.exists():
            raise UsageError(f"local_path {local!r} of [{where}] does not exist ({path})")
        source = LocalSource(path.resolve())
    else:
        source = S3Source.parse(s3 or "")
    return JobSpec(name, _inside(handler, where), source, _wait_time(section, where))


def _inside(handler: str, where: str) -> str:
    """The handler as a normal relative path; it must stay inside its package."""
    normal = posixpath.normpath(handler.strip())
    if escapes(normal) or normal == ".":
        raise UsageError(f"handler {handler!r} of [{where}] must be a path inside its package")
    return normal


def _wait_time(section: configparser.SectionProxy, where: str) -> int:
    text = section.get("wait_time")
    if text is None:
        return WAIT_TIME
    try:
        seconds = int(text)
    except ValueError:
        raise UsageError(
            f"wait_time must be a whole number of seconds, not {text!r} (in {where} section)"
        ) from None
    if not MIN_WAIT_TIME <= seconds <= MAX_WAIT_TIME:
        raise UsageError(
            f"wait_time must be between {MIN_WAIT_TIME} and {MAX_WAIT_TIME} seconds inclusive"
            f" (in {where} section)"
        )
    return seconds
