"""API Gateway's rule that moto's CloudFormation does not play (it makes no
AWS::ApiGateway::UsagePlanKey): a key is in at most one usage plan of a stage ("Usage
plans and API keys for REST APIs"). CloudFormation makes a stack update's new resources,
replacements included, before it deletes the old ones, so during an update the stack
holds the associations of both templates: `refuse_two_plans_per_stage` refuses a
CreateStack or UpdateStack after which a key would, for that moment, sit in two plans of
one stage, as the real update fails and rolls back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

Json = dict[str, Any]
PLAN_KEY, PLAN = "AWS::ApiGateway::UsagePlanKey", "AWS::ApiGateway::UsagePlan"


def associations(template: Json) -> Iterator[tuple[str, str, frozenset[str]]]:
    """(key, plan, the plan's stages) of each UsagePlanKey, each named as the template
    names it (a Ref's logical id, or the value's JSON)."""
    resources = template.get("Resources", {})
    for body in resources.values():
        if body.get("Type") != PLAN_KEY:
            continue
        properties = body.get("Properties", {})
        key, plan = properties.get("KeyId"), properties.get("UsagePlanId")
        plan_id = plan["Ref"] if isinstance(plan, dict) and "Ref" in plan else json.dumps(plan)
        stages = resources.get(plan_id, {}).get("Properties", {}).get("ApiStages", [])
        yield (
            json.dumps(key, sort_keys=True),
            plan_id,
            frozenset(json.dumps(s, sort_keys=True) for s in stages),
        )


def keys_in_two_plans_of_a_stage(before: Json | None, after: Json) -> list[str]:
    """The keys that, while the stack goes from `before` to `after` (both templates' usage
    plan keys at once), sit in two plans sharing a stage."""
    held = {*associations(before or {}), *associations(after)}
    found = []
    for key, plan, stages in sorted(held):
        for other_key, other, other_stages in sorted(held):
            if other_key == key and other > plan and stages & other_stages:
                found.append(f"{key} in {plan} and {other}")
    return found


def refuse_two_plans_per_stage(events: Any) -> list[str]:
    """Register on a boto3 session's `events` the refusal of a CreateStack/UpdateStack that
    puts a key in two plans of a stage (a ClientError, ValidationError, as CloudFormation's
    failed update reports it). Returns the list each refusal is noted in. Its own reads go
    through a session of their own (no recorder sees them)."""
    refused: list[str] = []
    reader = boto3.session.Session()

    def check(params: Json, model: Any, context: Json, **_: Any) -> None:
        region = context.get("client_region") or "us-east-1"
        after = _body(reader, params, region)
        before = None
        if model.name == "UpdateStack":
            cf = reader.client("cloudformation", region_name=region)
            body = cf.get_template(StackName=params["StackName"], TemplateStage="Original")[
                "TemplateBody"
            ]
            before = body if isinstance(body, dict) else json.loads(body)
        found = keys_in_two_plans_of_a_stage(before, after)
        if found:
            refused.extend(found)
            raise ClientError(
                {"Error": {"Code": "ValidationError", "Message": "; ".join(found) + ": an API "
                           "key can only be associated with one usage plan for each stage"}},
                model.name,
            )  # fmt: skip

    for operation in ("CreateStack", "UpdateStack"):
        events.register(f"before-parameter-build.cloudformation.{operation}", check)
    return refused


def _body(session: Any, params: Json, region: str) -> Json:
    if "TemplateBody" in params:
        body = params["TemplateBody"]
        return dict(body) if isinstance(body, dict) else dict(json.loads(body))
    url = urlparse(params["TemplateURL"])
    bucket = url.netloc.split(".s3")[0]
    got = session.client("s3", region_name=region).get_object(
        Bucket=bucket, Key=url.path.lstrip("/")
    )
    return dict(json.loads(got["Body"].read()))


def let_moto_remove_what_it_cannot_make(monkeypatch: Any) -> None:
    """moto's CloudFormation makes nothing of a type it does not know (a usage plan key),
    but fails a stack update that removes one: let such a removal remove nothing."""
    from moto.cloudformation import parsing

    removes = parsing.parse_and_delete_resource

    def remove(name: Any, resource_json: Json, account_id: str, region_name: str) -> None:
        if parsing.resource_class_from_type(resource_json["Type"]) is None:
            return
        removes(name, resource_json, account_id, region_name)

    monkeypatch.setattr(parsing, "parse_and_delete_resource", remove)
