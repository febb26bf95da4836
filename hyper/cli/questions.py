"""What each resource walkthrough asks, in the original tool's order, with its defaults.

Every question is also a flag (the first spelling is the one messages use).
"""

from __future__ import annotations

from hyper.cli.walkthrough import Answers, Question
from hyper.models import LOG_DRIVERS as MODEL_LOG_DRIVERS
from hyper.models import check_name, check_vpc

SUBNET_CONFIGS = ("PUBLIC", "PRIVATE_ISOLATED", "PRIVATE_WITH_NAT")
VPC_ENDPOINTS = ("OFF", "DATA_OPTIMISED", "FOR_PRIVATE_VPC")
LOG_DRIVERS = ("", *MODEL_LOG_DRIVERS)  # "" keeps the container tool's own


def _aws(answers: Answers) -> bool:
    return answers.get("kind") == "aws"


def _slurm(answers: Answers) -> bool:
    return answers.get("kind") == "slurm"


def _own_vpc(answers: Answers) -> bool:
    return _aws(answers) and not answers.get("import_vpc", True)


NETWORK = [
    Question("import_vpc", ("--import-vpc/--new-vpc",), "Use the same VPC as the host?", "bool",
             True, when=_aws, help="aws: reuse the host's VPC"),
    Question("vpc", ("--vpc",), "VPC: a CIDR for a new one, or an existing vpc-id", when=_own_vpc,
             check=check_vpc,
             help="aws: a CIDR (10.0.0.0/16) for a new VPC, or an existing vpc-id"),
    Question("peer_with_main_region", ("--peer-with-main-region/--no-peer-with-main-region",),
             "Peer with the main region?", "bool", False, when=_aws),
    Question("deploy_vpc_endpoints", ("--deploy-vpc-endpoints",), "VPC endpoints", "choice",
             "OFF", VPC_ENDPOINTS, when=_aws),
    Question("subnet_config", ("--subnet-config",), "Subnets", "choice", "PRIVATE_WITH_NAT",
             SUBNET_CONFIGS, when=_aws),
    Question("nat_gateways", ("--nat-gateways",), "NAT gateways", "int", 2,
             when=lambda a: _aws(a) and a.get("subnet_config") == "PRIVATE_WITH_NAT"),
]  # fmt: skip

SLURM = [
    Question("partition", ("--partition",), "Slurm partition (empty: the cluster's default)",
             default="", when=_slurm, help="slurm: the partition pilots are submitted to"),
    Question("account", ("--account",), "Slurm account (empty: your default)", default="",
             when=_slurm, help="slurm: the account pilots are charged to"),
    Question("qos", ("--qos",), "Slurm QOS (empty: the default)", default="", when=_slurm,
             help="slurm: the quality of service of pilots"),
    Question("reservation", ("--reservation",), "Slurm reservation (empty: none)", default="",
             when=_slurm, help="slurm: a reservation to run pilots in"),
    Question("sbatch_args", ("--sbatch-args",), "More sbatch arguments (empty: none)",
             default="", when=_slurm,
             help="slurm: more sbatch arguments, quoted as in a shell, e.g. '--constraint=avx2'"),
    Question("pilot_walltime_minutes", ("--pilot-walltime-minutes",), "Pilot walltime (minutes)",
             "int", 60, when=_slurm, help="slurm: each pilot's --time"),
    Question("max_pilots", ("--max-pilots",), "Most pilots at once", "int", 10, when=_slurm,
             help="slurm: pilots pending or running at once"),
    Question("pilot_idle_seconds", ("--pilot-idle-seconds",), "Seconds an idle pilot waits",
             "int", 60, when=_slurm, help="slurm: a pilot with nothing to do ends after this"),
    Question("pilot_pending_minutes", ("--pilot-pending-minutes",),
             "Minutes a pilot may stay PENDING", default=30, when=_slurm, check=float,
             help="slurm: pilots pending longer are cancelled and reported in the region's log"),
    Question("worker_python", ("--worker-python",),
             "Python that runs the worker on the cluster (empty: the host's own)", default="",
             when=_slurm,
             help="slurm: a python with hyper installed, on the cluster's shared file system"),
]  # fmt: skip

MAIN_REGION = [
    Question("name", ("--name",), "Main region name", check=check_name, default=None,
             help="the region code (on a local host, any name)"),
    Question("kind", ("--kind",), "Kind of region", "choice", "local", ("local", "aws")),
    *NETWORK,
]  # fmt: skip

REGION = [
    Question("name", ("--name",), "Region name", check=check_name,
             help="a region code on AWS; any name for a pool of machines"),
    Question("kind", ("--kind",), "Kind of region", "choice", "static",
             ("static", "aws", "slurm"),
             help="static: machines that join with 'hyper worker join'; aws: an AWS region;"
             " slurm: a Slurm cluster whose pilot jobs run the workers"),
    *NETWORK,
    *SLURM,
]  # fmt: skip

CLUSTER = [
    Question("name", ("--name",), "Cluster name", check=check_name),
    Question("instance_list", ("--instance-list",), "Instance types (comma-separated)", "list",
             ["optimal"]),
    Question("max_vcpus", ("--max-vcpus", "--max-vCPUs"), "Max vCPUs per region", "int", 1000),
    Question("compute_envs", ("--compute-envs",), "Compute environments per region (1-3)",
             "int", 3),
    Question("type", ("--type",), "Capacity type", "choice", "SPOT", ("SPOT", "ONDEMAND")),
    Question("iam_policies", ("--iam-policies",), "IAM policies for the instances", "list", []),
    Question("main_region_image_name", ("--main-region-image-name",), "Custom AMI name (empty:"
             " none)", default=""),
    Question("bid_percentage", ("--bid-percentage",), "Spot bid, % of on-demand", "int", 100,
             when=lambda a: a.get("type") == "SPOT"),
    Question("allocation_strategy", ("--allocation-strategy",), "Allocation strategy", "choice",
             "SPOT_CAPACITY_OPTIMIZED",
             ("SPOT_CAPACITY_OPTIMIZED", "BEST_FIT_PROGRESSIVE", "BEST_FIT"),
             when=lambda a: a.get("type") == "SPOT"),
    Question("compute_resources_tags", ("--compute-resources-tags",), "Tags (KEY=VALUE, comma"
             "-separated; empty: none)", "pairs", {}, help="KEY VALUE, repeatable"),
]  # fmt: skip

QUEUE = [
    Question("name", ("--name",), "Queue name", check=check_name),
    Question("compute_environment", ("--compute-environment",), "Cluster", "ref", ref="clusters",
             help="the cluster's exact name"),
    Question("automate_region_weights", ("--automate-region-weights/--manual-region-weights",),
             "Weigh regions automatically (all ACTIVE regions)?", "bool", True),
    Question("region_distribution_weights", ("-rw", "--region-distribution-weights"),
             "Weight of region", "pairs", None, value_type=int,
             when=lambda a: not a.get("automate_region_weights", True),
             help="REGION WEIGHT, repeatable; weight 0 leaves a region unused",
             extra={"per_ref": "regions"}),
    Question("default", ("--default/--no-default",), "The host's default queue (for jobs that"
             " name none)?", "bool", False, help="qsub without -q submits here",
             extra={"optional": True}),
    Question("default_definition", ("--default-definition",), "Default definition for its jobs"
             " (empty: none)", default="", help="qsub without -d uses it; empty: none",
             extra={"optional": True}),
]  # fmt: skip

IMAGE = [
    Question("name", ("--name",), "Image name", check=check_name),
    Question("local_build_directory", ("--local-build-directory",),
             "Directory with the Dockerfile", default="example-worker-image"),
]  # fmt: skip

REPLACE_IMAGE = [
    Question("name", ("--name",), "Image name", "ref", ref="images"),
    Question("local_docker_image", ("--local-docker-image",), "Local image (repo:tag)"),
]  # fmt: skip

DEFINITION = [
    Question("name", ("--name",), "Definition name", check=check_name),
    Question("use_cyclone_image", ("--use-cyclone-image/--use-image-uri",),
             "Use an image of this host?", "bool", True),
    Question("cyclone_image_name", ("--cyclone-image-name",), "Image", "ref", "native",
             ref="images", when=lambda a: a.get("use_cyclone_image", True)),
    Question("image_uri", ("--image-uri",), "Image URI (_REGION_ is replaced per region)",
             when=lambda a: not a.get("use_cyclone_image", True)),
    Question("jobs_to_workers_ratio", ("--jobs-to-workers-ratio",), "Jobs per worker", "int", 1),
    Question("vcpus", ("--vcpus",), "vCPUs per worker", "int", 1),
    Question("memory_limit_mib", ("--memory-limit-mib",), "Memory limit per job (MiB)", "int",
             1024),
    Question("default_cpus", ("--default-cpus",), "CPUs of a job that asks for none (0: all)",
             "int", 0, help="jobs asking for nothing share a worker this many CPUs each"),
    Question("linux_parameters", ("--linux-parameters",), "Linux parameters (JSON)", "json", {}),
    Question("ulimits", ("--ulimits",), "Ulimits (JSON list)", "json", []),
    Question("mount_points", ("--mount-points",), "Mount points (JSON list)", "json", []),
    Question("host_volumes", ("--host-volumes",), "Host volumes (JSON list)", "json", []),
    Question("gpu_count", ("--gpu-count",), "GPUs (0: none)", "int", 0),
    Question("gpu_ids", ("--gpu-ids",), "GPU ids (comma-separated; empty: 0 to count-1)",
             "list", [], when=lambda a: bool(a.get("gpu_count")),
             help="the GPUs a worker hands its jobs, by the index CUDA_VISIBLE_DEVICES takes"),
    Question("environment", ("--environment",), "Environment (JSON object)", "json", {}),
    Question("privileged", ("--privileged/--no-privileged",), "Privileged containers?", "bool",
             False),
    Question("user", ("--user",), "User to run as (empty: the image's)", default=""),
    Question("timeout_minutes", ("--timeout-minutes",), "Worker lifetime in minutes (0: no"
             " limit)", "int", 0),
    Question("iam_policies", ("--iam-policies",), "IAM policies (comma-separated)", "list", []),
    Question("log_driver", ("--log-driver",), "Log driver", "choice", "", LOG_DRIVERS),
    Question("log_options", ("--log-options",), "Log options (JSON object)", "json", {}),
    Question("enable_qlog", ("--enable-qlog/--disable-qlog",), "Send job output to qlog?",
             "bool", True),
    Question("output_limit_mib", ("--output-limit-mib",), "Output kept per job attempt (MiB:"
             " its first and last halves)", "int", 32),
]  # fmt: skip
