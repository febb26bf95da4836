"""The AWS provider: what a host's resources mean in AWS.

- a region: its network stack (``templates.region_template``), and the main region's
  return routes when it peers;
- a cluster: compute environments and a job queue in every ACTIVE AWS region;
- a queue: its cluster's job queue, checked in every region it weighs;
- an image: an ECR repository in every ACTIVE region; the image is built and pushed
  from the user's machine (``images.py``), never here;
- a definition: a job definition in every ACTIVE region, with a job role that may read
  the host's API key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hyper.errors import DeployFailed, UsageError
from hyper.models import (
    ClusterSpec,
    DefinitionSpec,
    DeployStatus,
    ImageSpec,
    QueueSpec,
    RegionSpec,
    ResourceKind,
    Spec,
)
from hyper.providers.aws import batch, stacks, templates
from hyper.providers.aws.host import worker_names
from hyper.providers.aws.policies import MANAGED_POLICIES_PER_ROLE
from hyper.store.base import Store

Log = Callable[[str], None]


class AwsProvider:
    def __init__(
        self,
        store: Store,
        *,
        host_name: str,
        secret_arn: str | None,
        host_vpc: str | None = None,
        host_subnets: Sequence[str] = (),
        patience: batch.Patience | None = None,
        permissions_boundary: str | None = None,
        allowed_policies: Sequence[str] = (),
        allowed_vpcs: Sequence[str] = (),
        allowed_container_options: Sequence[str] = (),
        worker_secret_arn: str | None = None,
    ) -> None:
        self.store = store
        self.host_name = host_name
        # the secret job roles may read: none on a host whose workers are given the worker
        # key and a token (a host made before them: the secret holding its key)
        self.secret_arn = secret_arn
        # the worker key's secret, which job definitions hand their workers (`secrets`)
        self.worker_secret_arn = worker_secret_arn or None
        self.host_vpc = host_vpc  # a CIDR or vpc-id, for regions that reuse the host's
        self.host_subnets = tuple(host_subnets)  # in that vpc-id: where workers go
        self.names = worker_names(host_name)
        self.patience = patience or batch.Patience()  # how long to wait for AWS to settle
        self.boundary = permissions_boundary or None  # on every role this provider makes
        # the policies clusters and definitions may attach (the host owner's list)
        self.allowed_policies = tuple(p for p in allowed_policies if p)
        # the existing VPCs regions may put workers in (the owner's list; and the host's)
        own = (host_vpc,) if host_vpc and host_vpc.startswith("vpc-") else ()
        self.allowed_vpcs = (*own, *(v for v in allowed_vpcs if v))
        # what definitions may ask beyond their container (batch.CONTAINER_OPTIONS)
        self.allowed_container_options = tuple(o for o in allowed_container_options if o)

    # what exists -------------------------------------------------------------

    def active_regions(self) -> list[RegionSpec]:
        found = []
        for record in self.store.list_resources(ResourceKind.REGION.value):
            spec = RegionSpec.model_validate(record.spec)
            if spec.kind == "aws" and record.status == DeployStatus.ACTIVE.value:
                found.append(spec)
        return found

    def _main_region(self) -> RegionSpec | None:
        return next((r for r in self.active_regions() if r.main_region), None)

    def _spec(self, kind: ResourceKind, name: str) -> Spec | None:
        from hyper.models import SPECS

        record = self.store.get_resource(kind.value, name)
        return SPECS[kind].model_validate(record.spec) if record else None

    def network(self, region: str) -> batch.Network:
        """The subnets and security group of a region, from its stack."""
        outputs = stacks.stack_outputs(stacks.region_stack_name(self.host_name, region), region)
        subnets = tuple(s for s in outputs.get("SubnetIds", "").split(",") if s)
        if not subnets or not outputs.get("SecurityGroupId"):
            raise DeployFailed(f"region {region}'s stack gives no subnets or security group")
        return batch.Network(subnets=subnets, security_group=outputs["SecurityGroupId"])

    # deploy and teardown -----------------------------------------------------

    def check(self, kind: ResourceKind, spec: Spec) -> None:
        """UsageError, before anything is recorded, for what AWS could never deploy or
        the host's owner does not allow."""
        if isinstance(spec, RegionSpec) and spec.kind == "aws":
            templates.check_new_network(spec)
            if spec.vpc_id and spec.vpc_id not in self.allowed_vpcs:
                allowed = ", ".join(self.allowed_vpcs) or "none"
                raise UsageError(
                    f"region {spec.name}: VPC {spec.vpc_id} is not one the host's owner allows"
                    f" (allowed: {allowed}; hyper hosts update-host --allowed-vpcs)"
                )
        if isinstance(spec, ClusterSpec | DefinitionSpec):
            if len(set(spec.iam_policies)) > MANAGED_POLICIES_PER_ROLE:
                raise UsageError(
                    f"{kind.singular} {spec.name}: {len(set(spec.iam_policies))} IAM policies;"
                    f" IAM attaches at most {MANAGED_POLICIES_PER_ROLE} to one role"
                )
            refused = [p for p in spec.iam_policies if p not in self.allowed_policies]
            if refused:
                allowed = ", ".join(self.allowed_policies) or "none"
                raise UsageError(
                    f"{kind.singular} {spec.name}: IAM policy {refused[0]} is not one the "
                    f"host's owner allows (allowed: {allowed}; hyper hosts update-host "
                    "--allowed-policies)"
                )
        if isinstance(spec, DefinitionSpec):
            logs = [templates.worker_log_group(self.host_name)]
            asked = batch.container_options(spec, logs)
            refused = [o for o in asked if o not in self.allowed_container_options]
            if refused:
                raise UsageError(
                    f"definition {spec.name}: {batch.CONTAINER_OPTIONS[refused[0]]} are not "
                    f"allowed by the host's owner (create-host --allowed-container-options "
                    f"{refused[0]})"
                )

    def deploy(self, kind: ResourceKind, spec: Spec, log: Log) -> Spec:
        try:
            self.check(kind, spec)
        except UsageError as error:
            raise DeployFailed(str(error)) from None
        if isinstance(spec, RegionSpec):
            return self._region(spec, log)
        if isinstance(spec, ClusterSpec):
            return self._cluster(spec, log)
        if isinstance(spec, QueueSpec):
            weights = spec.region_distribution_weights
            for region in self.active_regions():
                if spec.automate_region_weights or weights.get(region.name, 0) > 0:
                    batch.check_queue(region.name, spec, self.names)
            log(f"queue {spec.name} sends its workers to cluster {spec.compute_environment}")
            return spec
        if isinstance(spec, ImageSpec):
            return self._image(spec, log)
        if isinstance(spec, DefinitionSpec):
            return self._definition(spec, log)
        raise DeployFailed(f"{kind.singular} {spec.name}: not something AWS hosts deploy")

    def teardown(self, kind: ResourceKind, spec: Spec, log: Log) -> None:
        regions = [r.name for r in self.active_regions()]
        if isinstance(spec, RegionSpec):
            if spec.kind == "aws":
                stacks.delete_stack(stacks.region_stack_name(self.host_name, spec.name),
                                    spec.name, log)  # fmt: skip
        elif isinstance(spec, ClusterSpec):
            for region in regions:
                batch.delete_cluster(region, spec, self.names, log, patience=self.patience)
            batch.delete_cluster_roles(spec, self.names, log, boundary=self.boundary)
        elif isinstance(spec, ImageSpec):
            for region in regions:
                batch.delete_repository(region, spec, self.names, log)
        elif isinstance(spec, DefinitionSpec):
            for region in regions:
                batch.delete_definition(region, spec, self.names, log)
            batch.delete_job_role(spec, self.names, log, boundary=self.boundary)

    def _cluster(self, spec: ClusterSpec, log: Log) -> Spec:
        """The cluster's roles, then its compute environments and queue in every ACTIVE
        region; the instance role is granted the ECS clusters Batch made for them (known
        before when every environment is there and VALID, else once they are)."""
        regions = [r.name for r in self.active_regions()]
        logs = [templates.worker_log_group(self.host_name)]
        known = [batch.ecs_clusters(region, spec, self.names) for region in regions]
        # all or nothing: a region whose clusters are not known yet leaves the pattern
        before = [] if None in known else [arn for found in known if found for arn in found]
        roles = batch.ensure_cluster_roles(spec, self.names, log, boundary=self.boundary,
                                           log_groups=logs, ecs_clusters=before)  # fmt: skip
        made = [
            batch.deploy_cluster(region, spec, self.network(region), roles, self.names, log,
                                 patience=self.patience)
            for region in regions
        ]  # fmt: skip
        after = [arn for placed in made for arn in placed.ecs_clusters]
        if after != before:
            batch.narrow_instance_policy(spec, self.names, after, log, log_groups=logs)
        return spec

    def _region(self, spec: RegionSpec, log: Log) -> Spec:
        if spec.kind != "aws":
            raise DeployFailed(f"an aws host's regions are AWS regions, not {spec.kind}")
        vpc = None
        if spec.vpc_id:
            vpc = stacks.lookup_vpc(spec.vpc_id, spec.name)
        elif not spec.cidr and spec.import_vpc:
            if not self.host_vpc:
                raise DeployFailed("the host has no VPC to reuse: give the region a CIDR")
            if self.host_vpc.startswith("vpc-"):
                vpc = stacks.lookup_vpc(self.host_vpc, spec.name, subnets=self.host_subnets)
            else:  # the host's range, as a new VPC in this region
                spec = spec.model_copy(update={"cidr": self.host_vpc})
        peer = None
        main = self._main_region()
        if spec.peer_with_main_region and not spec.main_region:
            if main is None:
                raise DeployFailed("there is no ACTIVE main region to peer with")
            theirs = stacks.stack_outputs(
                stacks.region_stack_name(self.host_name, main.name), main.name
            )
            peer = templates.PeerVpc(theirs["VpcId"], theirs.get("VpcCidr", ""), main.name)
        name = stacks.region_stack_name(self.host_name, spec.name)
        template = templates.region_template(spec, host_name=self.host_name, vpc=vpc, peer=peer)
        outputs = stacks.deploy_stack(name, template, spec.name, log=log)
        if peer is not None and main is not None and outputs.get("PeeringConnectionId"):
            # the main region routes back to this one, or the peering carries nothing
            main_vpc = stacks.lookup_vpc(peer.vpc_id, main.name)
            routes = templates.peering_routes_template(
                self.host_name,
                spec.name,
                peering_connection_id=outputs["PeeringConnectionId"],
                route_table_ids=main_vpc.route_table_ids,
                cidr=outputs.get("VpcCidr") or spec.cidr or "",
            )
            stacks.deploy_stack(f"{name}-routes", routes, main.name, log=log)
        return spec

    def _image(self, spec: ImageSpec, log: Log) -> Spec:
        """The image's repository in every ACTIVE region. Building and pushing happen on
        the user's machine (`images.push_from_here`): this runs in Lambda, which has no
        docker; the spec comes with the URI pushed to."""
        regions = [r.name for r in self.active_regions()]
        if spec.name == "native":
            log("the native image has no container: definitions on AWS need an image")
            return spec
        uri = ""
        for region in regions:
            uri = batch.deploy_repository(region, spec, self.names, log)
        if spec.uri:
            log(f"image {spec.name} is {spec.uri}")
            return spec
        if spec.local_build_directory or spec.local_docker_image:
            raise DeployFailed(
                f"image {spec.name}: an AWS host's images are built and pushed from your "
                "machine (its functions have no docker): run hyper images add-image (or "
                "replace-with-local-image) where docker runs, with your AWS credentials"
            )
        if uri:
            log(f"repositories ready; push an image with replace-with-local-image ({uri})")
        return spec

    def _definition(self, spec: DefinitionSpec, log: Log) -> Spec:
        image = None
        if spec.use_cyclone_image:
            found = self._spec(ResourceKind.IMAGE, spec.cyclone_image_name)
            image = found if isinstance(found, ImageSpec) else None
        uri = batch.definition_image(spec, image)
        role = batch.ensure_job_role(spec, self.names, self.secret_arn, log,
                                     boundary=self.boundary)  # fmt: skip
        logs = templates.worker_log_group(self.host_name)  # its workers log there
        execution = None
        if self.worker_secret_arn:
            execution = batch.ensure_execution_role(self.names, self.worker_secret_arn, log,
                                                    boundary=self.boundary,
                                                    log_groups=[logs])  # fmt: skip
        for region in self.active_regions():
            batch.deploy_definition(region.name, spec, self.names, log, image=uri,
                                    job_role_arn=role, secret_arn=self.secret_arn,
                                    log_group=logs, worker_secret_arn=self.worker_secret_arn,
                                    execution_role_arn=execution)  # fmt: skip
        return spec
