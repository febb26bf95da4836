"""What every CloudFormation template of a host is built from: its constants,
value helpers (Ref, GetAtt, Sub), resources, outputs, tags, statements and names."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

Template = dict[str, Any]
Json = dict[str, Any]

# the bundle's wheels are built for this version (bundle.py); 3.12 runs on Amazon Linux
# 2023 (3.11's runtime is on Amazon Linux 2, at its end of support)
LAMBDA_PYTHON = "3.12"
LAMBDA_RUNTIME = f"python{LAMBDA_PYTHON}"
LAMBDA_HANDLER = "hyper.host.lambda_adapter.handler"
FUNCTION_TIMEOUT_SECONDS = 300  # API Gateway ends a request at 29 s; a tick may take longer
DEPLOY_TIMEOUT_SECONDS = 900  # Lambda's most: a region's stack can take minutes
API_STAGE = "v1"
TEMPLATE_VERSION = "2010-09-09"
HOST_TAG = "hyper:host"
SECRET_PARAMETER = "ApiKeySecretArn"  # the host stack's parameters: the host's key's secret
WORKER_SECRET_PARAMETER = "WorkerKeySecretArn"  # and the worker key's (hyper/host/auth.py)
# the API Gateway keys' values: derived from the keys (hyper/key_headers.py), never them
GATEWAY_KEY_PARAMETER = "ApiGatewayKey"
WORKER_GATEWAY_KEY_PARAMETER = "WorkerGatewayKey"
KEY_OWNERS_PARAMETER = "KeyOwners"  # who may change the keys' secrets besides the root
KEY_READERS_PARAMETER = "KeyReaders"  # who else may only read them (policies.py)
# their values: aws:PrincipalArn patterns, each preceded by this character, which no IAM
# user or role name holds (IAM's names take [\w+=,.@-]: a "," would split a name)
KEY_PATTERNS_SEPARATOR = "|"
KEY_PATTERNS_FORMAT = r"(\|[^|]+){{{at_least},}}"
# Lambda concurrency reserved for each function: the API always has its share of the
# account's (1,000 by default; at least 100 must stay unreserved) and cannot take it all
# from the account's other functions; changes always have room. docs/aws.md.
API_CONCURRENCY = 400
DEPLOY_CONCURRENCY = 10
# the usage plans' throttles, (requests per second, burst): API Gateway throttles each key
# of a plan on its own; the API key (its holder's commands) and the worker key (every
# worker of the host, together) have a plan each. The workers' is sized for 10,000
# running jobs: heartbeats every 30 s (333/s) and a claim and a completion per job of a
# minute or more (333/s) make about 670/s; a first wave of claims takes the burst, the
# rest back off (429). docs/aws.md, "Timings, by host kind".
KEY_THROTTLE = (500.0, 1000)
WORKER_THROTTLE = (1000.0, 2000)


def ref(name: str) -> Json:
    return {"Ref": name}


def get_att(name: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [name, attribute]}


def sub(text: str) -> Json:
    return {"Fn::Sub": text}


def resource(kind: str, properties: Json, **attributes: Any) -> Json:
    """One resource: its type, properties and attributes (DependsOn, DeletionPolicy...)."""
    return {"Type": kind, "Properties": properties, **attributes}


def output(value: Any, description: str) -> Json:
    return {"Description": description, "Value": value}


def tags(host_name: str, name: str | None = None) -> list[Json]:
    found = [{"Key": HOST_TAG, "Value": host_name}]
    if name:
        found.insert(0, {"Key": "Name", "Value": name})
    return found


def statement(actions: list[str], resources: list[Any] | str, sid: str = "", **more: Any) -> Json:
    """An Allow statement; `sid` names it (docs/aws.md says which one grants each call)."""
    found: Json = {"Sid": sid} if sid else {}
    return {**found, "Effect": "Allow", "Action": actions, "Resource": resources, **more}


def logical_id(text: str) -> str:
    """`hyper-h-job-logs` -> `HyperHJobLogs`: what CloudFormation accepts as a logical id."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text))


def physical_name(host_name: str, suffix: str = "", *, limit: int = 64) -> str:
    """`hyper-HOST[-SUFFIX]` in letters, digits, '-' and '_' (what Lambda, dashboards and
    stacks accept), at most `limit` long. A name that had to change ends with a hash of
    the original, so two hosts never share one."""
    wanted = f"hyper-{host_name}" + (f"-{suffix}" if suffix else "")
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", wanted)
    if safe == wanted and len(safe) <= limit:
        return safe
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:8]
    return f"{safe[: limit - len(digest) - 1]}-{digest}"


def resource_prefix(host_name: str) -> str:
    """The start of the name of each Batch resource, role, instance profile and region
    stack of a host: ``hyper-HOST-``, and then one more ``-`` before the resource's own
    name (``hyper-prod--c1-ce1``). HOST is the host's name in letters, digits and single
    dashes, never ending with one (a name that had to change ends with a hash of it), so
    that ``hyper-prod--*`` in a policy matches nothing of host ``prod-eu``
    (``hyper-prod-eu--...``) nor of any other host."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", host_name).strip("-")
    if cleaned != host_name or len(cleaned) > 32:
        digest = hashlib.sha256(host_name.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[:23].strip('-')}-{digest}".lstrip("-")
    return f"hyper-{cleaned}-"


def worker_log_group(host_name: str) -> str:
    """Where the host's workers' container logs go (its `WorkerLogs`)."""
    return f"/hyper/{host_name}/workers"


def table_prefix(host_name: str) -> str:
    """The prefix of a host's DynamoDB tables, named `PREFIX-TABLE` (what
    `tables.table_definitions` takes)."""
    return f"hyper-{host_name}"


def function_name(host_name: str) -> str:
    return physical_name(host_name, "host")


def template_hash(template: Template) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
