"""Request and response bodies of the host API (what the OpenAPI schema shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hyper.jobs import LogKind


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSubmission(Body):
    name: str = Field(min_length=1, max_length=256)
    queue: str = Field(min_length=1, max_length=128)
    definition: str = Field(min_length=1, max_length=128)
    script: str
    retries: int = Field(0, ge=0, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    submit_dir: str | None = Field(None, max_length=4096)


class SubmitRequest(Body):
    jobs: list[JobSubmission] = Field(min_length=1)


class SubmitResponse(BaseModel):
    ids: list[int]


class JobPage(BaseModel):
    jobs: list[dict[str, Any]]
    next: int | None = None


class CancelRequest(Body):
    ids: list[int] = Field(default_factory=list)
    name: str | None = None
    queue: str | None = None


class CancelResponse(BaseModel):
    cancelled: list[int]
    stopping: list[int]
    finished: list[int]


class LogPage(BaseModel):
    entries: list[dict[str, Any]]
    next: int
    finished: bool


class ClaimRequest(Body):
    queue: str
    definition: str
    limit: int = Field(1, ge=1, le=1000)
    wait: float = Field(0.0, ge=0.0, le=60.0)


class ClaimResponse(BaseModel):
    jobs: list[dict[str, Any]]


class OutputChunk(Body):
    kind: LogKind
    text: str


class ProgressReport(Body):
    attempt: int = Field(ge=1)
    output: list[OutputChunk] = Field(default_factory=list)
    metrics: dict[str, float] | None = None


class ProgressResponse(BaseModel):
    cancel: bool


class CompletionReport(Body):
    attempt: int = Field(ge=1)
    exit_code: int | None = None
    reason: str | None = Field(None, max_length=1000)
    output: list[OutputChunk] = Field(default_factory=list)


class CompletionResponse(BaseModel):
    status: str


class ResourceList(BaseModel):
    items: list[dict[str, Any]]
