"""CloudFormation templates, generated in Python as plain dicts.

Two stacks make an AWS host:

- ``host_template``: the control plane in the host's region. The DynamoDB tables the
  store asks for, an S3 bucket, a REST API (a key on every method: the API key
  and the worker key, each with a usage plan that throttles it) in front of one
  Lambda function that runs the host app, a one-minute schedule that makes the same
  function run a scheduler tick, the function's role (this host's tables, bucket, log
  group and secret, and nothing else of the kind), log groups with retention, the
  secret holding the API key, and optionally a CloudWatch dashboard.
- ``region_template``: the network a region's workers run in: the host's VPC or an
  existing one (their subnets and route tables looked up beforehand, see
  ``stacks.lookup_vpc``), or a new VPC with public or NAT'ed private
  subnets; VPC endpoints; peering with the main region; a security group for workers.
  ``peering_routes_template`` adds the main region's side of a peering.

Nothing here calls AWS: a template is a function of its arguments, so the same
arguments give the same template (and CloudFormation sees no change).

This module is the templates' one front: each concept lives in a module of its own
(template_parts: the building blocks; policies: the host's roles and boundary;
control_plane: the host stack; networks: a region's network) and is named here.
"""

from __future__ import annotations

from hyper.providers.aws.control_plane import dynamodb_table, host_template
from hyper.providers.aws.networks import (
    GATEWAY_ENDPOINTS,
    INTERFACE_ENDPOINTS,
    PRIVATE_SLOT,
    SUBNET_SLOTS,
    VPC_ID,
    ExistingVpc,
    PeerVpc,
    check_new_network,
    check_vpc_ids,
    peering_routes_template,
    region_template,
    subnet_range,
)
from hyper.providers.aws.policies import (
    BATCH_MANAGED_POLICIES,
    BOUNDED_ROLE_ACTIONS,
    EC2_HOST_CHANGES,
    EC2_HOST_CREATES,
    EC2_HOST_DELETES,
    EC2_OWNER_CHANGES,
    EC2_READS,
    OWNER_TAG,
    PROFILE_ACTIONS,
    ROLE_ACTIONS,
    SERVICE_LINKED_ROLES,
    TABLE_ACTIONS,
    managed_policy_arn,
)
from hyper.providers.aws.template_parts import (
    API_CONCURRENCY,
    API_STAGE,
    DEPLOY_CONCURRENCY,
    DEPLOY_TIMEOUT_SECONDS,
    FUNCTION_TIMEOUT_SECONDS,
    GATEWAY_KEY_PARAMETER,
    HOST_TAG,
    KEY_OWNERS_PARAMETER,
    KEY_PATTERNS_SEPARATOR,
    KEY_READERS_PARAMETER,
    LAMBDA_HANDLER,
    LAMBDA_PYTHON,
    LAMBDA_RUNTIME,
    SECRET_PARAMETER,
    TEMPLATE_VERSION,
    WORKER_GATEWAY_KEY_PARAMETER,
    WORKER_SECRET_PARAMETER,
    Json,
    Template,
    function_name,
    get_att,
    logical_id,
    output,
    physical_name,
    ref,
    resource,
    resource_prefix,
    statement,
    sub,
    table_prefix,
    tags,
    template_hash,
    worker_log_group,
)

__all__ = [
    "API_CONCURRENCY",
    "API_STAGE",
    "BATCH_MANAGED_POLICIES",
    "BOUNDED_ROLE_ACTIONS",
    "DEPLOY_CONCURRENCY",
    "DEPLOY_TIMEOUT_SECONDS",
    "EC2_HOST_CHANGES",
    "EC2_HOST_CREATES",
    "EC2_HOST_DELETES",
    "EC2_OWNER_CHANGES",
    "EC2_READS",
    "FUNCTION_TIMEOUT_SECONDS",
    "GATEWAY_ENDPOINTS",
    "GATEWAY_KEY_PARAMETER",
    "HOST_TAG",
    "INTERFACE_ENDPOINTS",
    "KEY_OWNERS_PARAMETER",
    "KEY_PATTERNS_SEPARATOR",
    "KEY_READERS_PARAMETER",
    "LAMBDA_HANDLER",
    "LAMBDA_PYTHON",
    "LAMBDA_RUNTIME",
    "OWNER_TAG",
    "PRIVATE_SLOT",
    "PROFILE_ACTIONS",
    "ROLE_ACTIONS",
    "SECRET_PARAMETER",
    "SERVICE_LINKED_ROLES",
    "SUBNET_SLOTS",
    "TABLE_ACTIONS",
    "TEMPLATE_VERSION",
    "VPC_ID",
    "WORKER_GATEWAY_KEY_PARAMETER",
    "WORKER_SECRET_PARAMETER",
    "ExistingVpc",
    "Json",
    "PeerVpc",
    "Template",
    "check_new_network",
    "check_vpc_ids",
    "dynamodb_table",
    "function_name",
    "get_att",
    "host_template",
    "logical_id",
    "managed_policy_arn",
    "output",
    "peering_routes_template",
    "physical_name",
    "ref",
    "region_template",
    "resource",
    "resource_prefix",
    "statement",
    "sub",
    "subnet_range",
    "table_prefix",
    "tags",
    "template_hash",
    "worker_log_group",
]
