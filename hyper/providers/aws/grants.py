"""Which version of hyper's grants each thing an AWS host deployed holds, so that
`hyper hosts check-host` names what still holds older ones.

hyper narrows what its roles and networks may do from release to release (the scoped
instance policy, job roles that read no secret, the permissions boundary); what was
deployed before keeps its old grants until it is deployed again. Each kind's version
(VERSIONS) goes up when what that kind is granted changes, and each thing deployed
carries the version it was deployed with:

- a definition: its job role's tag ``hyper:grants``;
- a cluster: its instance role's tag ``hyper:grants``;
- a region: its stack's output ``GrantsVersion`` (an output, not a stack tag, which
  CloudFormation would copy onto every resource of the stack).

Version 1 is everything deployed before these marks: it carries none.
"""

from __future__ import annotations

GRANTS_TAG = "hyper:grants"
GRANTS_OUTPUT = "GrantsVersion"
UNMARKED = 1
# 2: the scoped policies (boundary, scoped instance role, job roles without secrets,
# EC2 creates split by resource, worker tokens), and a definition's workers that stay
# root to run its jobs as another user (no container `user` in its job definition);
# 3: job roles that hold hyper-job-limits (nothing on the host's machines, Batch's
# launchers of them, its ECS clusters, stacks, keys and logs), and a cluster's machines
# tagged with the host, with no IPv6 way to the metadata service
VERSIONS = {"regions": 2, "clusters": 3, "definitions": 3}
SINGULAR = {"regions": "region", "clusters": "cluster", "definitions": "definition"}


def tag(kind: str) -> dict[str, str]:
    """The tag a role of `kind` (clusters, definitions) carries."""
    return {GRANTS_TAG: str(VERSIONS[kind])}


def version_of(mark: str | None) -> int:
    """The version a tag's or output's value says (UNMARKED when there is none)."""
    try:
        return int(mark) if mark else UNMARKED
    except ValueError:
        return UNMARKED


def redeploy_command(kind: str, name: str) -> str:
    """What deploys it again as it is, with this release's grants."""
    return f"hyper {kind} update-{SINGULAR[kind]} {name} --redeploy"
