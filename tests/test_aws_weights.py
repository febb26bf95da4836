"""`auto` region weights from EC2 spot placement scores (botocore's Stubber: moto has no
GetSpotPlacementScores)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hyper.models import ClusterSpec
from hyper.providers.aws.weights import auto_weights, fallback_weights, weights_from_scores

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
CLUSTER = ClusterSpec(name="c1", instance_list=["c5.large", "m5.large", "r5.large"], max_vcpus=1000)


@pytest.fixture
def ec2() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def request(capacity: int, **more: Any) -> dict[str, Any]:
    return {
        "InstanceTypes": ["c5.large", "m5.large", "r5.large"],
        "TargetCapacity": capacity,
        "TargetCapacityUnitType": "vcpu",
        "SingleAvailabilityZone": False,
        "RegionNames": REGIONS,
        **more,
    }


def scores(**by_region: int) -> list[dict[str, Any]]:
    return [{"Region": region.replace("_", "-"), "Score": s} for region, s in by_region.items()]


def test_weights_are_score_squared_over_the_lowest(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_response(
        "get_spot_placement_scores",
        {"SpotPlacementScores": scores(us_east_1=9, eu_west_1=3, ap_southeast_2=6)},
        request(1000),
    )
    lines: list[str] = []
    weights = auto_weights(REGIONS, CLUSTER, ec2=client, log=lines.append)
    assert weights == {"us-east-1": 27, "eu-west-1": 3, "ap-southeast-2": 12}
    assert lines == ["region weights: us-east-1=27, eu-west-1=3, ap-southeast-2=12"]


def test_the_target_capacity_is_halved_while_too_large(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    for capacity in (1000, 500, 250):
        stub.add_client_error(
            "get_spot_placement_scores",
            service_error_code="InvalidParameterValue",
            service_message=f"TargetCapacityLimitExceeded: {capacity} is more than allowed",
            http_status_code=400,
            expected_params=request(capacity),
        )
    stub.add_response(
        "get_spot_placement_scores",
        {"SpotPlacementScores": scores(us_east_1=2, eu_west_1=4, ap_southeast_2=10)},
        request(125),
    )
    weights = auto_weights(REGIONS, CLUSTER, ec2=client)
    assert weights == {"us-east-1": 2, "eu-west-1": 8, "ap-southeast-2": 50}


def test_a_capacity_error_by_its_own_code_is_halved_too(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error("get_spot_placement_scores", "TargetCapacityLimitExceeded",
                          expected_params=request(1000))  # fmt: skip
    stub.add_response("get_spot_placement_scores",
                      {"SpotPlacementScores": scores(us_east_1=5, eu_west_1=5)},
                      request(500))  # fmt: skip
    # a region EC2 does not score counts as the lowest score (1)
    weights = auto_weights(REGIONS, CLUSTER, ec2=client)
    assert weights == {"us-east-1": 25, "eu-west-1": 25, "ap-southeast-2": 1}


def test_pages_are_followed(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_response(
        "get_spot_placement_scores",
        {"SpotPlacementScores": scores(us_east_1=8), "NextToken": "more"},
        request(1000),
    )
    stub.add_response(
        "get_spot_placement_scores",
        {"SpotPlacementScores": scores(eu_west_1=4, ap_southeast_2=2)},
        request(1000, NextToken="more"),
    )
    weights = auto_weights(REGIONS, CLUSTER, ec2=client)
    assert weights == {"us-east-1": 32, "eu-west-1": 8, "ap-southeast-2": 2}


def test_a_failed_call_falls_back_to_the_fixed_weights(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    stub.add_client_error("get_spot_placement_scores", "UnauthorizedOperation",
                          expected_params=request(1000))  # fmt: skip
    lines: list[str] = []
    weights = auto_weights(REGIONS, CLUSTER, ec2=client, log=lines.append)
    assert weights == {"us-east-1": 5, "eu-west-1": 5, "ap-southeast-2": 1}
    assert lines == ["region weights: fixed (spot placement scores failed: UnauthorizedOperation)"]


def test_halving_stops_at_one_vcpu(ec2: tuple[Any, Stubber]) -> None:
    client, stub = ec2
    small = CLUSTER.model_copy(update={"max_vcpus": 4})
    for capacity in (4, 2, 1):
        stub.add_client_error("get_spot_placement_scores", "TargetCapacityLimitExceeded",
                              expected_params=request(capacity))  # fmt: skip
    assert auto_weights(REGIONS, small, ec2=client) == fallback_weights(REGIONS)


def test_optimal_instance_types_are_not_scored(ec2: tuple[Any, Stubber]) -> None:
    client, _ = ec2  # no call is stubbed: any call would fail the test
    lines: list[str] = []
    optimal = ClusterSpec(name="c2")
    assert optimal.instance_list == ["optimal"]
    every = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1",
             "ap-southeast-1", "ap-northeast-1"]  # fmt: skip
    assert auto_weights(every, optimal, ec2=client, log=lines.append) == {
        "us-east-1": 5, "us-east-2": 5, "us-west-1": 5, "us-west-2": 1, "eu-west-1": 5,
        "eu-central-1": 1, "ap-southeast-1": 5, "ap-northeast-1": 1,
    }  # fmt: skip
    mixed = ClusterSpec(name="c3", instance_list=["optimal", "c5.large"])
    assert auto_weights(REGIONS, mixed, ec2=client) == fallback_weights(REGIONS)
    assert lines == ["region weights: fixed (instance types 'optimal' cannot be scored)"]
    assert auto_weights([], CLUSTER, ec2=client) == {}


def test_weights_from_scores() -> None:
    assert weights_from_scores(["a", "b"], {"a": 10, "b": 10}) == {"a": 10, "b": 10}
    assert weights_from_scores(["a", "b", "c"], {"a": 7, "b": 3, "c": 2}) == {
        "a": 25,  # 49 / 2 = 24.5, rounded half up
        "b": 5,  # 9 / 2 = 4.5
        "c": 2,
    }
    assert weights_from_scores([], {}) == {}
