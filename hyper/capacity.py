"""What a job asks for and what a worker has: CPUs, memory and GPUs.

A *request* is what a job asks (`qsub --cpus 2 --mem 4G --gpus 1`, or a dialect's
directives); a *shape* is what one worker of a definition has (its vCPUs, memory and
GPUs). A worker runs as many jobs at once as fit in what it has left. A job that
asks for nothing takes the definition's default share: the whole worker unless the
definition says `default_cpus` (so such jobs run one at a time on a worker, as they
always did, or as many at once as shares fit); a job that asks
for some of it gets defaults for the rest: memory in proportion to its CPUs, one CPU
when it asks only memory, no GPU unless asked.

Pure (no I/O), so that qsub, the host and the worker agree on one rule.
"""

from __future__ import annotations

import re

from hyper.errors import UsageError
from hyper.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING: qsub reads requests without typing
if TYPE_CHECKING:
    from typing import Any

MAX_CPUS = 4096
MAX_GPUS = 64
MAX_MEM_MIB = 64 * 2**20  # 64 TiB

# a size's unit, as the schedulers write them (K, KB, KiB, k...): powers of 1024
_UNITS = {"": None, "b": -20, "k": -10, "m": 0, "g": 10, "t": 20, "p": 30}
# compiled where first used (re caches it), not when a command imports this module
_SIZE = r"\s*([0-9]+(?:\.[0-9]+)?)\s*([bkmgtpBKMGTP]?)(?:i?[bB]|[wW])?\s*"


class Request(NamedTuple):
    """What a job gets on its worker: CPUs, memory (MiB) and GPUs."""

    cpus: int
    mem_mib: int
    gpus: int

    def fits(self, room: Request) -> bool:
        return self.cpus <= room.cpus and self.mem_mib <= room.mem_mib and self.gpus <= room.gpus

    def minus(self, other: Request) -> Request:
        return Request(self.cpus - other.cpus, self.mem_mib - other.mem_mib, self.gpus - other.gpus)

    def plus(self, other: Request) -> Request:
        return Request(self.cpus + other.cpus, self.mem_mib + other.mem_mib, self.gpus + other.gpus)

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else ""
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}, {size_text(self.mem_mib)}{gpus}"

    def as_dict(self) -> dict[str, int]:
        return {"cpus": self.cpus, "mem_mib": self.mem_mib, "gpus": self.gpus}


def size_text(mib: int) -> str:
    """`512M`, `16G`: the form every dialect reads back (G only when whole)."""
    return f"{mib // 1024}G" if mib >= 1024 and mib % 1024 == 0 else f"{mib}M"


def parse_size(text: str, default_unit: str = "M", what: str = "memory") -> int:
    """MiB, from a size as the schedulers write it: `16G`, `16gb`, `4000` (in
    `default_unit`: Slurm and LSF say MB, PBS bytes), `512M`, `1.5G`, `100mb`, `2TB`.
    K/M/G/T are powers of 1024 (as in all three schedulers); a part of a MiB rounds up."""
    match = re.fullmatch(_SIZE, text)
    if not match:
        raise UsageError(f"{what} {text!r}: use a size such as 512M, 16G or 4000 (MB)")
    number, unit = float(match.group(1)), (match.group(2) or default_unit).lower()
    shift = _UNITS[unit]
    if shift is None:
        raise UsageError(f"{what} {text!r}: unknown unit")
    mib = number * 2.0**shift
    whole = int(mib) if mib == int(mib) else int(mib) + 1
    if whole < 1:
        raise UsageError(f"{what} {text!r} is less than 1 MiB")
    if whole > MAX_MEM_MIB:
        raise UsageError(f"{what} {text!r} is more than 64 TiB")
    return whole


def parse_count(text: str | int, what: str, most: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UsageError(f"{what} must be a whole number, not {text!r}") from None
    if not 0 <= value <= most:
        raise UsageError(f"{what} must be between 0 and {most}, not {value}")
    return value


class Shape(NamedTuple):
    """One worker of a definition: its vCPUs, memory (MiB) and GPU ids, and the CPUs a
    job asking nothing gets (0: the whole worker)."""

    cpus: int
    mem_mib: int
    gpu_ids: tuple[str, ...]
    share_cpus: int = 0

    @property
    def whole(self) -> Request:
        return Request(self.cpus, self.mem_mib, len(self.gpu_ids))


def shape_of(definition: dict[str, Any]) -> Shape:
    """A definition spec's worker shape. GPUs: the ids it declares (`gpu_ids`), else
    `gpu_count` of them numbered from 0."""
    ids = [str(g) for g in definition.get("gpu_ids") or []]
    if not ids:
        ids = [str(i) for i in range(int(definition.get("gpu_count") or 0))]
    return Shape(
        int(definition.get("vcpus") or 1),
        int(definition.get("memory_limit_mib") or 1024),
        tuple(ids),
        int(definition.get("default_cpus") or 0),
    )


def effective(asked: dict[str, Any] | None, shape: Shape) -> Request:
    """What a job gets on a worker of `shape`, from what it asked (None or {} = nothing):
    nothing asked is the shape's default share (`share_cpus` CPUs, else the whole
    worker); CPUs without memory get the memory of that many CPUs' share (at most the
    worker's); memory without CPUs gets one CPU; GPUs are 0 unless asked."""
    asked = {k: v for k, v in (asked or {}).items() if v is not None}
    if not asked:
        if not shape.share_cpus:
            return shape.whole
        asked = {"cpus": shape.share_cpus}
    cpus = int(asked.get("cpus") or 1)
    mem = asked.get("mem_mib")
    if mem is None:
        mem = max(1, min(shape.mem_mib, shape.mem_mib * cpus // max(1, shape.cpus)))
    return Request(cpus, int(mem), int(asked.get("gpus") or 0))


def refusal(asked: dict[str, Any] | None, shape: Shape, definition: str) -> str | None:
    """Why a job can never run on a worker of this definition (None when it can)."""
    want = effective(asked, shape)
    have = shape.whole
    if want.fits(have):
        return None
    return (
        f"the job asks for {want.describe()}, but a worker of definition {definition!r} has"
        f" {have.describe()}: ask for at most that, or use a definition with bigger workers"
    )


def check_nodes(count: int, written: str) -> None:
    """hyper runs a job on one machine: more nodes is refused with one line."""
    if count > 1:
        raise UsageError(
            f"{written}: the job asks for {count} nodes; hyper runs each job on one machine"
            " (ask for CPUs on one node instead)"
        )


def workers_for(asked: dict[tuple[tuple[str, int], ...], int], shape: Shape, ratio: int) -> int:
    """How many workers of `shape` hold these jobs: `asked` counts the jobs by what they
    asked (a request's items, sorted; () = nothing). Jobs asking nothing for a whole
    worker need one worker per `ratio` of them, as they always did; the others (and jobs
    asking nothing where the shape has a default share) are packed first fit, largest
    request first, into workers of the shape (one that could never fit gets none)."""
    plain = 0 if shape.share_cpus else asked.get((), 0)
    wanted = -(-plain // max(1, ratio))
    sized: dict[Request, int] = {}
    whole = shape.whole
    for items, count in asked.items():
        if (items or shape.share_cpus) and count > 0:
            want = effective(dict(items), shape)
            if want.fits(whole):
                sized[want] = sized.get(want, 0) + count
    rooms: list[Request] = []  # what each worker opened so far has left
    for want, count in sorted(sized.items(), key=_largest_first):
        for i, room in enumerate(rooms):
            if count <= 0:
                break
            take = min(count, _how_many(want, room))
            if take:
                rooms[i] = room.minus(_times(want, take))
                count -= take
        per_worker = _how_many(want, whole)
        while count > 0:
            take = min(count, per_worker)
            rooms.append(whole.minus(_times(want, take)))
            count -= take
    return wanted + len(rooms)


def too_large(asked: dict[tuple[tuple[str, int], ...], int], shape: Shape) -> list[Request]:
    """The requests among `asked` that no worker of `shape` can hold, one per job, largest
    first (a launcher that sizes workers gives each a worker of its own)."""
    found: list[Request] = []
    for items, count in asked.items():
        want = effective(dict(items), shape)
        if not want.fits(shape.whole):
            found.extend([want] * count)
    return sorted(found, key=lambda r: (-r.gpus, -r.cpus, -r.mem_mib))


def _largest_first(item: tuple[Request, int]) -> tuple[int, int, int]:
    want = item[0]
    return (-want.gpus, -want.cpus, -want.mem_mib)


def _times(want: Request, count: int) -> Request:
    return Request(want.cpus * count, want.mem_mib * count, want.gpus * count)


def _how_many(want: Request, room: Request) -> int:
    """How many jobs asking `want` fit in `room`."""
    limits = [room.cpus // want.cpus if want.cpus else None]
    limits.append(room.mem_mib // want.mem_mib if want.mem_mib else None)
    limits.append(room.gpus // want.gpus if want.gpus else None)
    found = [n for n in limits if n is not None]
    return max(0, min(found)) if found else 0
