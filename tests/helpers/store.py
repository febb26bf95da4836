"""New jobs for the store contract tests."""

from __future__ import annotations

from hyper.jobspec import Dependency
from hyper.store.base import (
    ArrayTasks,
    NewJob,
)

Q = "q1"
D = "d1"


def job(
    name: str = "job",
    *,
    queue: str = Q,
    definition: str = D,
    script: str = "echo hi\n",
    retries: int = 0,
    env: dict[str, str] | None = None,
    submit_dir: str | None = None,
    priority: int = 0,
    hold: bool = False,
    depends: tuple[Dependency, ...] = (),
    array: ArrayTasks | None = None,
    time_limit: int | None = None,
    options: dict[str, object] | None = None,
) -> NewJob:
    return NewJob(
        name=name,
        queue=queue,
        definition=definition,
        script=script,
        retries=retries,
        env=env or {},
        submit_dir=submit_dir,
        priority=priority,
        time_limit=time_limit,
        hold=hold,
        depends=depends,
        options=options or {},
        array=array,
    )
