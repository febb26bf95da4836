"""`auto` region weights from EC2 spot placement scores, as the original tool made them.

One GetSpotPlacementScores call scores every region for the cluster's instance types at a
target capacity of the cluster's max vCPUs (halved and asked again while EC2 answers
TargetCapacityLimitExceeded). A region's weight is score² / the lowest score, so the best
regions get clearly more workers. A region EC2 does not score counts as the lowest score
possible (1).

When the instance types are "optimal" (EC2 cannot score Batch's choice) or the call
fails, the original's fixed weights apply: 5 for us-east-1, us-east-2, us-west-1,
eu-west-1 and ap-southeast-1, 1 elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hyper.models import ClusterSpec
from hyper.providers import Log
from hyper.providers.aws.calls import aws_client, error_code

FAVOURED_REGIONS = ("us-east-1", "us-east-2", "us-west-1", "eu-west-1", "ap-southeast-1")
LOWEST_SCORE = 1  # scores run from 1 to 10
CAPACITY_TOO_LARGE = "TargetCapacityLimitExceeded"


def fallback_weights(regions: Sequence[str]) -> dict[str, int]:
    return {region: 5 if region in FAVOURED_REGIONS else 1 for region in regions}


def weights_from_scores(regions: Sequence[str], scores: Mapping[str, int]) -> dict[str, int]:
    """score² / lowest score for each region, rounded half up, at least 1."""
    found = {region: max(LOWEST_SCORE, int(scores.get(region, LOWEST_SCORE))) for region in regions}
    if not found:
        return {}
    lowest = min(found.values())
    return {
        region: max(1, math.floor(score * score / lowest + 0.5)) for region, score in found.items()
    }


def _too_large(error: Exception) -> bool:
    return CAPACITY_TOO_LARGE in error_code(error) or CAPACITY_TOO_LARGE in str(error)


def spot_scores(
    ec2: Any, regions: Sequence[str], instance_types: Sequence[str], capacity: int
) -> dict[str, int]:
    """Each region's spot placement score (pages followed), halving the target capacity on
    TargetCapacityLimitExceeded down to 1 vCPU."""
    while True:
        try:
            scores: dict[str, int] = {}
            request: dict[str, Any] = {
                "InstanceTypes": list(instance_types),
                "TargetCapacity": capacity,
                "TargetCapacityUnitType": "vcpu",
                "SingleAvailabilityZone": False,
                "RegionNames": list(regions),
            }
            while True:
                page = ec2.get_spot_placement_scores(**request)
                for score in page.get("SpotPlacementScores", []):
                    region = score.get("Region")
                    if region and "Score" in score:
                        scores[region] = max(scores.get(region, 0), int(score["Score"]))
                if not page.get("NextToken"):
                    return scores
                request["NextToken"] = page["NextToken"]
        except Exception as error:
            if not _too_large(error) or capacity <= 1:
                raise
            capacity //= 2


def auto_weights(
    regions: Sequence[str],
    cluster: ClusterSpec,
    *,
    ec2: Any = None,
    log: Log | None = None,
) -> dict[str, int]:
    """Weights for `regions` from the spot placement scores of the cluster's instance types
    (the fallback weights when they cannot be had). `ec2` is an EC2 client; without one,
    a boto3 client of the first region is made."""
    say = log or (lambda line: None)
    regions = list(dict.fromkeys(regions))
    if not regions:
        return {}
    types = list(cluster.instance_list)
    if not types or "optimal" in types:
        say("region weights: fixed (instance types 'optimal' cannot be scored)")
        return fallback_weights(regions)
    try:
        if ec2 is None:
            ec2 = aws_client("ec2", regions[0])
        scores = spot_scores(ec2, regions, types, cluster.max_vcpus)
    except Exception as error:
        say(f"region weights: fixed (spot placement scores failed: {error_code(error) or error})")
        return fallback_weights(regions)
    weights = weights_from_scores(regions, scores)
    say("region weights: " + ", ".join(f"{r}={w}" for r, w in weights.items()))
    return weights
