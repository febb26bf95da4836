"""Clusters, queues, images and definitions on AWS, one region at a time.

What each resource is in a region (every name comes from `Names`, under the host's prefix):

- cluster     ``compute_envs`` managed Batch compute environments ``PREFIX-CLUSTER-ce1..3``
              sharing the cluster's max vCPUs (SPOT or ON_DEMAND, in the region's subnets
              and security group), and ONE job queue ``PREFIX-CLUSTER`` in front of them,
              in that order, their instances launched from the cluster's launch
              template ``PREFIX-CLUSTER-instances`` (IMDSv2 only, hop limit 1; see
              launch_templates). An update sets max vCPUs and state; a delete disables
              and deletes the job queue, then the compute environments and the
              launch template.
- queue       nothing of its own: its workers are array jobs on its cluster's job queue
              (`check_queue` says whether that queue is there).
- image       an ECR repository ``prefix/image`` per region. `build_and_push` and
              `push_local_image` use docker when a docker engine answers (`docker info`).
              The image's URI is kept with ``_REGION_`` for the region, as definitions
              write it.
- definition  a Batch job definition ``PREFIX-DEFINITION`` per region whose container
              runs the worker agent (``start.sh`` of the worker image, see
              example-worker-image/), with a job role ``PREFIX-DEFINITION-job``; what
              it asks beyond its container (CONTAINER_OPTIONS) only when the host's
              owner allows it.

IAM roles are global: the ``ensure_*_role(s)`` functions run once per change, before the
per-region ones, and are idempotent. They are created when absent, each with the least
AWS documents for its service:

- no Batch service role: compute environments take Batch's service-linked role,
  ``AWSServiceRoleForBatch`` (a host made before has ``PREFIX-batch-service``, with AWS
  managed ``AWSBatchServiceRole``, for the environments made with it);
- ``PREFIX-CLUSTER-instance`` (ec2.amazonaws.com) and its instance profile: what the ECS
  agent does (``AmazonEC2ContainerServiceforEC2Role``'s actions) on the host's own ECS
  clusters, repositories and log groups (`instance_policy`), plus the cluster's
  iam_policies;
- ``PREFIX-spot-fleet``       (spotfleet.amazonaws.com) ``AmazonEC2SpotFleetTaggingRole``,
  only for SPOT clusters with allocation strategy BEST_FIT (the others need none);
- ``PREFIX-DEFINITION-job``  (ecs-tasks.amazonaws.com): the definition's iam_policies
  and nothing else (a host made before worker tokens: also an inline policy allowing
  ``secretsmanager:GetSecretValue`` on its key's secret);
- ``PREFIX-worker-secrets``   (ecs-tasks.amazonaws.com): the job definitions' execution
  role: the ECS agent reads the worker key's secret with it (the definitions'
  ``secrets``), pulls the host's images and writes its logs (`execution_policy`).

A `ClusterRoles` of ARNs made elsewhere may be passed instead of `ensure_cluster_roles`.

The API key never travels in a job definition or a submitted job. The job definition
names the worker key's secret (``secrets``: the ECS agent reads it as it starts the
container), and the launcher gives each submitted job its workers' token
(hyper/launchers/batch.py); DescribeJobs shows no key. On a host
made before them the job definition sets ``HYPER_API_KEY`` to the *ARN* of the host's
secret, and the worker (``python -m hyper.worker``) reads the secret's value with its job
role when it sees an ARN there.

Every AWS call goes through `ClientFactory` (plain boto3 clients by default, imported
lazily), so moto, a moto server (``AWS_ENDPOINT_URL``) or a Stubber can stand in.

This module is the Batch side's one front: each concept lives in a module of its own
(names, waiting, roles, clusters and queues, launch_templates, repositories,
worker_build, definitions) and is named
here, as callers use it (``batch.deploy_cluster``...).
"""

from __future__ import annotations

from hyper.providers.aws.calls import aws_client
from hyper.providers.aws.clusters import (
    MAX_COMPUTE_ENVS,
    ClusterInRegion,
    Network,
    check_queue,
    compute_resources,
    delete_cluster,
    deploy_cluster,
    ecs_clusters,
    find_ami,
    image_types,
    split_vcpus,
)
from hyper.providers.aws.definitions import (
    CONTAINER_OPTIONS,
    LOG_DRIVERS,
    WORKER_COMMAND,
    check_container_options,
    container_options,
    definition_image,
    delete_definition,
    deploy_definition,
    job_definition,
)
from hyper.providers.aws.launch_templates import (
    METADATA_OPTIONS,
    USER_DATA,
    delete_launch_template,
    ensure_launch_template,
    launch_template_data,
)
from hyper.providers.aws.names import DEFAULT_LOG_GROUP, Names
from hyper.providers.aws.repositories import (
    REGION_PLACEHOLDER,
    build_and_push,
    delete_repository,
    deploy_repository,
    push_local_image,
    require_docker_engine,
    uri_template,
)
from hyper.providers.aws.roles import (
    IAM_NOT_YET,
    ClusterRoles,
    delete_cluster_roles,
    delete_job_role,
    delete_shared_roles,
    ensure_cluster_roles,
    ensure_execution_role,
    ensure_job_role,
    instance_policy,
    narrow_instance_policy,
    wait_for_roles,
)
from hyper.providers.aws.waiting import ClientFactory, Patience

__all__ = [
    "CONTAINER_OPTIONS",
    "DEFAULT_LOG_GROUP",
    "IAM_NOT_YET",
    "LOG_DRIVERS",
    "MAX_COMPUTE_ENVS",
    "METADATA_OPTIONS",
    "REGION_PLACEHOLDER",
    "USER_DATA",
    "WORKER_COMMAND",
    "ClientFactory",
    "ClusterInRegion",
    "ClusterRoles",
    "Names",
    "Network",
    "Patience",
    "aws_client",
    "build_and_push",
    "check_container_options",
    "check_queue",
    "compute_resources",
    "container_options",
    "definition_image",
    "delete_cluster",
    "delete_cluster_roles",
    "delete_definition",
    "delete_job_role",
    "delete_launch_template",
    "delete_repository",
    "delete_shared_roles",
    "deploy_cluster",
    "deploy_definition",
    "deploy_repository",
    "ecs_clusters",
    "ensure_cluster_roles",
    "ensure_execution_role",
    "ensure_job_role",
    "ensure_launch_template",
    "find_ami",
    "image_types",
    "instance_policy",
    "job_definition",
    "launch_template_data",
    "narrow_instance_policy",
    "push_local_image",
    "require_docker_engine",
    "split_vcpus",
    "uri_template",
    "wait_for_roles",
]
