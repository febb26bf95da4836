"""A region's network stack (`region_template`) and the main region's side of a
peering (`peering_routes_template`). See templates.py."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hyper.errors import UsageError
from hyper.models import RegionSpec
from hyper.providers.aws import grants
from hyper.providers.aws.template_parts import (
    TEMPLATE_VERSION,
    Json,
    Template,
    get_att,
    logical_id,
    output,
    physical_name,
    ref,
    resource,
    sub,
    tags,
)

# interface endpoints a VPC without a way out needs for Batch workers: ECR (images),
# CloudWatch Logs, the ECS agent that Batch runs on its instances, Secrets Manager (the
# host's API key) and STS (role credentials); images' layers come through the S3 gateway
INTERFACE_ENDPOINTS = [
    "ecr.api", "ecr.dkr", "logs", "ecs", "ecs-agent", "ecs-telemetry", "secretsmanager", "sts",
]  # fmt: skip
GATEWAY_ENDPOINTS = ["s3", "dynamodb"]


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC the region stack uses but does not own: the host's or one named by id.
    `subnet_ids` are where workers go (and interface endpoints: at most one per
    availability zone); `route_table_ids` get the gateway endpoints and peering routes."""

    vpc_id: str
    subnet_ids: list[str]
    route_table_ids: list[str] = field(default_factory=list)
    cidr: str | None = None


@dataclass(frozen=True)
class PeerVpc:
    """The main region's VPC, for a region that peers with it."""

    vpc_id: str
    cidr: str
    region: str


def region_template(
    spec: RegionSpec,
    *,
    host_name: str,
    vpc: ExistingVpc | None = None,
    peer: PeerVpc | None = None,
) -> Template:
    """The network of one region's workers, as `spec` asks:

    - the VPC: `spec.vpc_id` (an existing VPC, described by `vpc`), else `spec.cidr` (a
      new VPC), else with `spec.import_vpc` the host's VPC (described by `vpc`);
    - a new VPC's subnets: PUBLIC (workers get public addresses) or PRIVATE_WITH_NAT
      (`spec.nat_gateways`, 1 to 3, NAT gateways in public subnets; 3 spreads over three
      availability zones, otherwise two). NAT gateways count only there. Each subnet's
      range depends only on its role and zone (`subnet_range`). PRIVATE_ISOLATED is
      refused: workers must reach the host's public API, and endpoints do not lead there;
    - an existing VPC's subnets must reach the API too (a NAT or an internet gateway):
      that is the owner's to arrange;
    - endpoints: DATA_OPTIMISED adds S3 and DynamoDB gateway endpoints, FOR_PRIVATE_VPC
      also the interface endpoints Batch workers need without a way out (with private
      DNS only in a new VPC: in an existing one it would reroute every workload's calls);
    - `spec.peer_with_main_region`: a peering connection with `peer` and routes to it.
    """
    if spec.vpc_id:
        if vpc is None or vpc.vpc_id != spec.vpc_id:
            raise UsageError(f"region {spec.name}: describe VPC {spec.vpc_id} first")
        network: _Network = _existing_network(vpc)
    elif spec.cidr:
        network = _new_network(spec, host_name)
    elif spec.import_vpc:
        if vpc is None:
            raise UsageError(f"region {spec.name}: the host's VPC is not known here")
        network = _existing_network(vpc)
    else:
        raise UsageError(f"region {spec.name}: give a CIDR for a new VPC or an existing vpc-id")

    resources = network.resources
    resources["WorkerSecurityGroup"] = resource(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": f"hyper host {host_name}: workers in {spec.name}",
            "VpcId": network.vpc_id,
            "SecurityGroupEgress": [
                {"IpProtocol": "-1", "CidrIp": "0.0.0.0/0", "Description": "anywhere"}
            ],
            "Tags": tags(host_name, physical_name(host_name, f"{spec.name}-workers", limit=255)),
        },
    )
    if spec.deploy_vpc_endpoints != "OFF":
        resources.update(_gateway_endpoints(network, host_name))
    if spec.deploy_vpc_endpoints == "FOR_PRIVATE_VPC":
        # private DNS names an endpoint for the whole VPC: only in one the host made
        ours = bool(spec.cidr) and not spec.vpc_id
        resources.update(_interface_endpoints(network, host_name, private_dns=ours))

    outputs = {
        "VpcId": output(network.vpc_id, "the workers' VPC"),
        "SubnetIds": output(network.subnet_ids, "the workers' subnets, comma-separated"),
        "SecurityGroupId": output(ref("WorkerSecurityGroup"), "the workers' security group"),
        grants.GRANTS_OUTPUT: output(
            str(grants.VERSIONS["regions"]), "the version of hyper's grants deployed here"
        ),
    }
    if network.cidr is not None:
        outputs["VpcCidr"] = output(network.cidr, "the VPC's address range")
    if spec.peer_with_main_region:
        if spec.main_region:
            raise UsageError(f"region {spec.name} is the main region: it cannot peer with itself")
        if peer is None:
            raise UsageError(f"region {spec.name}: the main region's VPC is not known here")
        if not network.route_tables:
            raise UsageError(f"region {spec.name}: VPC {network.vpc_id} has no route tables")
        mine = network.cidr_literal
        if mine and ipaddress.ip_network(mine).overlaps(ipaddress.ip_network(peer.cidr)):
            raise UsageError(
                f"region {spec.name}: {mine} overlaps the main region's {peer.cidr}; "
                "peered VPCs need separate ranges"
            )
        resources.update(_peering(network, peer, host_name, spec.name))
        outputs["PeeringConnectionId"] = output(ref("Peering"), "the peering with the main region")
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"hyper host {host_name}: region {spec.name}",
        "Resources": resources,
        "Outputs": outputs,
    }


def peering_routes_template(
    host_name: str,
    region_name: str,
    *,
    peering_connection_id: str,
    route_table_ids: list[str],
    cidr: str,
) -> Template:
    """The main region's side of a peering: routes to region `region_name`'s `cidr`."""
    resources = {
        f"PeerRoute{n}": resource(
            "AWS::EC2::Route",
            {
                "RouteTableId": table,
                "DestinationCidrBlock": cidr,
                "VpcPeeringConnectionId": peering_connection_id,
            },
        )
        for n, table in enumerate(route_table_ids)
    }
    return {
        "AWSTemplateFormatVersion": TEMPLATE_VERSION,
        "Description": f"hyper host {host_name}: routes from the main region to {region_name}",
        "Resources": resources,
    }


@dataclass
class _Network:
    vpc_id: Any  # a literal id or a Ref
    subnet_ids: Any  # a comma-separated list, literal or Fn::Join
    endpoint_subnets: list[Any]  # at most one per availability zone
    route_tables: list[Any]
    cidr: Any  # literal, GetAtt, or None when unknown
    cidr_literal: str | None
    resources: dict[str, Json] = field(default_factory=dict)


def _existing_network(vpc: ExistingVpc) -> _Network:
    if not vpc.subnet_ids:
        raise UsageError(f"VPC {vpc.vpc_id} has no subnets for workers")
    return _Network(
        vpc_id=vpc.vpc_id,
        subnet_ids=",".join(vpc.subnet_ids),
        endpoint_subnets=list(vpc.subnet_ids),
        route_tables=list(vpc.route_table_ids),
        cidr=vpc.cidr,
        cidr_literal=vpc.cidr,
    )


SUBNET_SLOTS = 8  # a new VPC is cut in eighths: public subnets first, private from the 5th
PRIVATE_SLOT = 4


def subnet_range(cidr: str, *, public: bool, zone: int) -> str:
    """The range of a new VPC's subnet: the same for the same role and zone whatever
    else the region asks (PUBLIC, NAT gateways, zones), so that an update never moves a
    subnet onto addresses another one holds (CloudFormation makes the new one first)."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.version != 4:
        raise UsageError(f"{cidr}: give an IPv4 range")
    if not 16 <= network.prefixlen <= 28:
        raise UsageError(f"{cidr}: a VPC's range is between /16 and /28")
    prefix = network.prefixlen + int(math.log2(SUBNET_SLOTS))
    if prefix > 28:
        raise UsageError(
            f"{cidr} is too small for hyper's {SUBNET_SLOTS} subnet slots (each at least /28): "
            f"give a /{28 - int(math.log2(SUBNET_SLOTS))} or larger"
        )
    slots = list(network.subnets(new_prefix=prefix))
    return str(slots[zone + (0 if public else PRIVATE_SLOT)])


def check_new_network(spec: RegionSpec) -> None:
    """UsageError unless a new VPC as `spec` asks lets workers reach the host's API."""
    if spec.cidr and not spec.vpc_id and spec.subnet_config == "PRIVATE_ISOLATED":
        raise UsageError(
            f"region {spec.name}: PRIVATE_ISOLATED subnets have no way to the host's API (a "
            "public HTTPS endpoint), so its workers could take no job: choose "
            "PRIVATE_WITH_NAT or PUBLIC"
        )
    if spec.cidr and not spec.vpc_id:
        subnet_range(spec.cidr, public=True, zone=0)


VPC_ID = re.compile(r"vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?")


def check_vpc_ids(text: str) -> list[str]:
    """The vpc-ids of a list `a,b` (the owner's --allowed-vpcs); UsageError for one that
    is not a vpc-id."""
    ids = [v.strip() for v in text.split(",") if v.strip()]
    wrong = [v for v in ids if not VPC_ID.fullmatch(v)]
    if wrong:
        raise UsageError(f"--allowed-vpcs: {wrong[0]!r} is not a vpc-id (vpc-...)")
    return ids


def _new_network(spec: RegionSpec, host_name: str) -> _Network:
    assert spec.cidr
    config = spec.subnet_config
    nats = spec.nat_gateways if config == "PRIVATE_WITH_NAT" else 0
    if config == "PRIVATE_WITH_NAT" and nats < 1:
        raise UsageError(
            f"region {spec.name}: PRIVATE_WITH_NAT needs at least one NAT gateway "
            "(or choose PUBLIC)"
        )
    check_new_network(spec)
    zones = 3 if nats == 3 else 2
    public = config in ("PUBLIC", "PRIVATE_WITH_NAT")
    private = config != "PUBLIC"
    subnet_range(spec.cidr, public=True, zone=0)  # the range is checked before anything
    vpc = _NewVpc(spec.name, host_name, str(ipaddress.ip_network(spec.cidr, strict=False)))
    route_tables: list[Any] = []
    public_subnets = [f"PublicSubnet{z}" for z in range(zones)] if public else []
    private_subnets = [f"PrivateSubnet{z}" for z in range(zones)] if private else []
    if public:
        route_tables.append(vpc.public(public_subnets))
    vpc.nat_gateways(public_subnets[:nats])
    if private:
        route_tables += vpc.private(private_subnets, nats)
    workers = private_subnets or public_subnets
    return _Network(
        vpc_id=ref("Vpc"),
        subnet_ids={"Fn::Join": [",", [ref(s) for s in workers]]},
        endpoint_subnets=[ref(s) for s in workers],
        route_tables=route_tables,
        cidr=get_att("Vpc", "CidrBlock"),
        cidr_literal=vpc.cidr,
        resources=vpc.res,
    )


@dataclass
class _NewVpc:
    """A new VPC's resources, added part by part (`res`), each tagged as the host's."""

    region: str
    host_name: str
    cidr: str
    res: dict[str, Json] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.res["Vpc"] = resource(
            "AWS::EC2::VPC",
            {
                "CidrBlock": self.cidr,
                "EnableDnsSupport": True,  # interface endpoints need both
                "EnableDnsHostnames": True,
                "Tags": self.name("vpc"),
            },
        )

    def name(self, suffix: str) -> list[Json]:
        named = physical_name(self.host_name, f"{self.region}-{suffix}", limit=255)
        return tags(self.host_name, named)

    def subnet(self, lid: str, zone: int, is_public: bool) -> None:
        self.res[lid] = resource(
            "AWS::EC2::Subnet",
            {
                "VpcId": ref("Vpc"),
                "CidrBlock": subnet_range(self.cidr, public=is_public, zone=zone),
                "AvailabilityZone": {"Fn::Select": [zone, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": is_public,
                "Tags": self.name(lid.lower()),
            },
        )

    def public(self, subnets: list[str]) -> Any:
        """An internet gateway, the public route table (returned) and `subnets` on it."""
        res = self.res
        res["InternetGateway"] = resource("AWS::EC2::InternetGateway", {"Tags": self.name("igw")})
        res["InternetGatewayAttachment"] = resource(
            "AWS::EC2::VPCGatewayAttachment",
            {"VpcId": ref("Vpc"), "InternetGatewayId": ref("InternetGateway")},
        )
        res["PublicRouteTable"] = resource(
            "AWS::EC2::RouteTable", {"VpcId": ref("Vpc"), "Tags": self.name("public")}
        )
        res["PublicDefaultRoute"] = resource(
            "AWS::EC2::Route",
            {
                "RouteTableId": ref("PublicRouteTable"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "GatewayId": ref("InternetGateway"),
            },
            DependsOn="InternetGatewayAttachment",
        )
        for zone, lid in enumerate(subnets):
            self.subnet(lid, zone, True)
            res[f"{lid}Routes"] = resource(
                "AWS::EC2::SubnetRouteTableAssociation",
                {"SubnetId": ref(lid), "RouteTableId": ref("PublicRouteTable")},
            )
        return ref("PublicRouteTable")

    def nat_gateways(self, subnets: list[str]) -> None:
        """A NAT gateway with its address in each of these public subnets."""
        for n, lid in enumerate(subnets):
            self.res[f"NatAddress{n}"] = resource(
                "AWS::EC2::EIP",
                {"Domain": "vpc", "Tags": self.name(f"nat{n}")},
                DependsOn="InternetGatewayAttachment",
            )
            self.res[f"NatGateway{n}"] = resource(
                "AWS::EC2::NatGateway",
                {
                    "AllocationId": get_att(f"NatAddress{n}", "AllocationId"),
                    "SubnetId": ref(lid),
                    "Tags": self.name(f"nat{n}"),
                },
            )

    def private(self, subnets: list[str], nats: int) -> list[Any]:
        """`subnets`, each with a route table (returned) out through a NAT gateway."""
        tables = []
        for zone, lid in enumerate(subnets):
            self.subnet(lid, zone, False)
            table = f"PrivateRouteTable{zone}"
            self.res[table] = resource(
                "AWS::EC2::RouteTable", {"VpcId": ref("Vpc"), "Tags": self.name(table.lower())}
            )
            self.res[f"{table}Nat"] = resource(
                "AWS::EC2::Route",
                {
                    "RouteTableId": ref(table),
                    "DestinationCidrBlock": "0.0.0.0/0",
                    "NatGatewayId": ref(f"NatGateway{zone % nats}"),
                },
            )
            self.res[f"{lid}Routes"] = resource(
                "AWS::EC2::SubnetRouteTableAssociation",
                {"SubnetId": ref(lid), "RouteTableId": ref(table)},
            )
            tables.append(ref(table))
        return tables


def _gateway_endpoints(network: _Network, host_name: str) -> dict[str, Json]:
    return {
        f"{logical_id(service)}Endpoint": resource(
            "AWS::EC2::VPCEndpoint",
            {
                "VpcId": network.vpc_id,
                "ServiceName": sub("com.amazonaws.${AWS::Region}." + service),
                "VpcEndpointType": "Gateway",
                "RouteTableIds": network.route_tables,
                "Tags": tags(host_name),
            },
        )
        for service in GATEWAY_ENDPOINTS
    }


def _interface_endpoints(
    network: _Network, host_name: str, *, private_dns: bool = True
) -> dict[str, Json]:
    """Interface endpoints for the services workers use. With `private_dns` (only in a
    VPC the host made) the services' own names resolve to them in the whole VPC; in an
    existing VPC that would take those services from every other workload there (the
    endpoints' security group admits only workers), so they keep their own names."""
    found: dict[str, Json] = {
        "EndpointSecurityGroup": resource(
            "AWS::EC2::SecurityGroup",
            {
                "GroupDescription": f"hyper host {host_name}: HTTPS from workers to endpoints",
                "VpcId": network.vpc_id,
                "SecurityGroupIngress": [
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "SourceSecurityGroupId": ref("WorkerSecurityGroup"),
                        "Description": "workers",
                    }
                ],
                "Tags": tags(host_name),
            },
        )
    }
    for service in INTERFACE_ENDPOINTS:
        found[f"{logical_id(service)}Endpoint"] = resource(
            "AWS::EC2::VPCEndpoint",
            {
                "VpcId": network.vpc_id,
                "ServiceName": sub("com.amazonaws.${AWS::Region}." + service),
                "VpcEndpointType": "Interface",
                "PrivateDnsEnabled": private_dns,
                "SubnetIds": network.endpoint_subnets,
                "SecurityGroupIds": [ref("EndpointSecurityGroup")],
                "Tags": tags(host_name),
            },
        )
    return found


def _peering(network: _Network, peer: PeerVpc, host_name: str, region: str) -> dict[str, Json]:
    found: dict[str, Json] = {
        "Peering": resource(
            "AWS::EC2::VPCPeeringConnection",
            {
                "VpcId": network.vpc_id,
                "PeerVpcId": peer.vpc_id,
                "PeerRegion": peer.region,
                "Tags": tags(host_name, physical_name(host_name, f"{region}-main", limit=255)),
            },
        )
    }
    for n, table in enumerate(network.route_tables):
        found[f"PeeringRoute{n}"] = resource(
            "AWS::EC2::Route",
            {
                "RouteTableId": table,
                "DestinationCidrBlock": peer.cidr,
                "VpcPeeringConnectionId": ref("Peering"),
            },
        )
    return found
