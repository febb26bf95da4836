"""The worker protocol's messages (hyper.messages): what /openapi.json says of them, the
host's models that mirror them, and a claim's JSON, the same as before they were typed;
and what a joined machine is told."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel

from hyper import messages
from hyper.host import schemas
from hyper.host_settings import HostSettings
from hyper.messages import TIMINGS, ClaimedJob, WorkerAssignment
from hyper.store.base import JobRecord
from hyper.worker.agent import WorkerOptions
from tests.helpers.api import claim, submit

CLAIMED_FIELDS = {f.name for f in dataclasses.fields(ClaimedJob)}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, following a `$ref` (and a lone `allOf`) into the schema's components."""
    while True:
        if "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        elif len(node.get("allOf", [])) == 1:
            node = node["allOf"][0]
        else:
            return node


def _claimed_job_schema(schema: dict[str, Any], path: str) -> dict[str, Any]:
    answer = schema["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
    body = _resolve(schema, answer["schema"])
    return _resolve(schema, body["properties"]["jobs"]["items"])


def test_openapi_describes_the_claim_payload(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    for path in (
        "/workers/{worker_id}/claim",
        "/workers/{worker_id}/complete",
        "/workers/{worker_id}/jobs/{job_id}/complete",
    ):
        job = _claimed_job_schema(schema, path)
        assert set(job["properties"]) == CLAIMED_FIELDS, path
        assert {"id", "attempt", "name", "queue", "definition"} <= set(job["required"])
    job = _claimed_job_schema(schema, "/workers/{worker_id}/claim")
    assert job["properties"]["id"]["type"] == "integer"
    assert job["properties"]["lease_seconds"]["type"] == "number"
    assert job["properties"]["definition_spec"]["type"] == "object"
    assert "ClaimedJob" in schema["components"]["schemas"]
    assert "handed to a worker" in schema["components"]["schemas"]["ClaimedJob"]["description"]


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def _keys(message: Any) -> set[str]:
    return set(message.__annotations__)


def test_the_hosts_models_mirror_the_messages() -> None:
    assert _fields(schemas.ClaimRequest) == _keys(messages.ClaimRequest)
    assert _fields(schemas.RoomBody) == _keys(messages.Room)
    assert _fields(schemas.OutputChunk) == _keys(messages.OutputPiece)
    assert _fields(schemas.ProgressReport) == _keys(messages.Progress)
    # a report in a batch: one Ending (claim_next is the batch's, not the report's)
    assert _fields(schemas.BatchReport) - {"claim_next"} == _keys(messages.Ending)
    assert _fields(schemas.BatchCompletion) == _keys(messages.Completion)
    assert _fields(schemas.ClaimRef) == _keys(messages.ClaimRef)
    assert _fields(schemas.NodeJoin) == _keys(messages.NodeJoin)


def test_openapi_describes_what_a_joined_machine_is_told_to_start(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    answer = schema["paths"]["/nodes/{node_id}/poll"]["post"]["responses"]["200"]
    body = _resolve(schema, answer["content"]["application/json"]["schema"])
    worker = _resolve(schema, body["properties"]["workers"]["items"])
    assert set(worker["properties"]) == {f.name for f in dataclasses.fields(WorkerAssignment)}
    assert {"worker_id", "queue", "definition"} <= set(worker["required"])
    assert worker["properties"]["heartbeat_seconds"]["type"] == "number"


def test_an_assignment_from_another_version_is_understood() -> None:
    wire = {"worker_id": "w1", "queue": "q", "definition": "d", "heartbeat_seconds": 2.0,
            "lifetime_seconds": None, "new_field": 1}  # fmt: skip
    assignment = WorkerAssignment.from_wire(wire)
    assert assignment.heartbeat_seconds == 2.0 and assignment.lifetime_seconds is None
    assert assignment.idle_seconds == TIMINGS.idle_seconds
    assert WorkerAssignment.from_wire(assignment.to_wire()) == assignment
    assert "new_field" not in assignment.to_wire()


def test_a_claims_json_is_the_job_and_how_to_run_it(api: TestClient) -> None:
    """The wire as it was before the messages were typed: every field of the job record,
    its definition, its image and its lease."""
    (job_id,) = submit(api)
    (claimed,) = claim(api, "w1")
    before = {f.name for f in dataclasses.fields(JobRecord)}
    assert set(claimed) == before | {"definition_spec", "image", "lease_seconds"}
    assert set(claimed) == CLAIMED_FIELDS
    job = ClaimedJob.from_wire(claimed)
    assert job.key == (job_id, 1)
    assert job.to_wire() == claimed


def test_a_message_from_another_version_is_understood() -> None:
    """Fields it does not know are left; those missing (or null) take their defaults."""
    job = ClaimedJob.from_wire(
        {"id": 3, "attempt": 2, "name": "j", "queue": "q", "definition": "d",
         "options": None, "definition_spec": None, "lease_seconds": None, "new_field": 1}
    )  # fmt: skip
    assert job.options == {} and job.definition_spec == {}
    assert job.lease_seconds == TIMINGS.lease_seconds
    assert "new_field" not in job.to_wire()


def test_worker_timings_are_defined_once(tmp_path: Any) -> None:
    settings = HostSettings(data_dir=tmp_path, api_key="k")
    options = WorkerOptions("w", "q", "d", tmp_path)
    assert settings.heartbeat_seconds == options.heartbeat_seconds == TIMINGS.heartbeat_seconds
    assert settings.worker_idle_seconds == options.idle_seconds == TIMINGS.idle_seconds
    assert settings.worker_patience_seconds == options.patience_seconds
    assert settings.lease_seconds == TIMINGS.lease_seconds
    assert settings.max_wait_seconds == TIMINGS.max_wait_seconds
