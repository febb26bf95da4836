"""The resource walkthroughs: how answers are parsed, what is asked on a terminal (driven
with piped keys), what is refused outside one, and the commands generated from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import typer.main
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from hyper.cli import make_app
from hyper.cli import questions as q
from hyper.cli.resources import to_spec
from hyper.cli.walkthrough import Answers, Question, pair_arguments, parse, walk
from hyper.errors import UsageError
from hyper.models import ClusterSpec, DefinitionSpec, QueueSpec, RegionSpec, ResourceKind

ENTER = "\r"
DOWN = "\x1b[B"
BACKSPACE = "\x7f"

CLUSTER_DEFAULTS = {
    "instance_list": ["optimal"],
    "max_vcpus": 1000,
    "compute_envs": 3,
    "type": "SPOT",
    "iam_policies": [],
    "main_region_image_name": "",
    "bid_percentage": 100,
    "allocation_strategy": "SPOT_CAPACITY_OPTIMIZED",
    "compute_resources_tags": {},
}


def question(key: str, questions: list[Question]) -> Question:
    return next(item for item in questions if item.key == key)


def no_refs(kind: str) -> list[str]:
    raise AssertionError(f"nothing should look up {kind}")


def typed(
    questions: list[Question],
    keys: str,
    refs: Callable[[str], list[str]] = no_refs,
    given: dict[str, Any] | None = None,
) -> Answers:
    """Answer a walkthrough on a (piped) terminal with these keystrokes."""
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        return walk(
            questions,
            given or {},
            yes=False,
            refs=refs,
            io={"input": pipe, "output": DummyOutput()},
            prompt=True,
        )


def refused(questions: list[Question], given: dict[str, Any], *, yes: bool = False) -> str:
    with pytest.raises(UsageError) as caught:
        walk(questions, given, yes=yes, refs=no_refs, prompt=False)
    return str(caught.value)


def missing_flags(message: str) -> list[str]:
    assert message.startswith("missing ") and "not a terminal" in message, message
    return message.removeprefix("missing ").split(" (")[0].split(", ")


# ---- parse -----------------------------------------------------------------------------


def test_parse_int() -> None:
    max_vcpus = question("max_vcpus", q.CLUSTER)
    assert parse(max_vcpus, "16") == 16
    assert parse(max_vcpus, " 7 ") == 7
    assert parse(max_vcpus, 5) == 5  # already a value: left alone
    with pytest.raises(UsageError, match=r"^--max-vcpus: not a whole number: 'lots'$"):
        parse(max_vcpus, "lots")


def test_parse_choice_is_case_insensitive() -> None:
    capacity = question("type", q.CLUSTER)
    assert parse(capacity, "ondemand") == "ONDEMAND"
    assert parse(capacity, "Spot") == "SPOT"
    with pytest.raises(UsageError, match=r"^--type: use one of SPOT, ONDEMAND, not 'cheap'$"):
        parse(capacity, "cheap")
    kind = question("kind", q.REGION)
    assert parse(kind, "AWS") == "aws"
    driver = question("log_driver", q.DEFINITION)
    assert parse(driver, "json_file") == "JSON_FILE"
    assert parse(driver, "") == ""


def test_parse_json() -> None:
    ulimits = question("ulimits", q.DEFINITION)
    assert parse(ulimits, '[{"name": "nofile"}]') == [{"name": "nofile"}]
    assert parse(ulimits, "") == []  # empty: the default
    assert parse(ulimits, "   ") == []
    options = question("log_options", q.DEFINITION)
    assert parse(options, "") == {}
    assert parse(options, '{"tag": "x"}') == {"tag": "x"}
    with pytest.raises(UsageError, match=r"^--log-options: not valid JSON: "):
        parse(options, "{tag: x}")


def test_parse_list_comma_and_json_forms() -> None:
    instances = question("instance_list", q.CLUSTER)
    assert parse(instances, "c5.large, m5.xlarge,,") == ["c5.large", "m5.xlarge"]
    assert parse(instances, '["c5.large", "m5.xlarge"]') == ["c5.large", "m5.xlarge"]
    assert parse(instances, " [1, 2] ") == ["1", "2"]
    assert parse(instances, "") == []
    assert parse(instances, ["a ", " ", "b"]) == ["a", "b"]  # a repeated flag
    with pytest.raises(UsageError, match=r"^--instance-list: not a valid JSON list: "):
        parse(instances, "[c5.large")


def test_parse_pairs() -> None:
    weights = question("region_distribution_weights", q.QUEUE)
    assert parse(weights, ["us-east-1=5", "eu-west-1=0"]) == {"us-east-1": 5, "eu-west-1": 0}
    assert parse(weights, "a=1, b=2") == {"a": 1, "b": 2}  # typed: several at once
    assert parse(weights, "") == {}
    with pytest.raises(UsageError, match=r"^-rw a: not a whole number: 'x'$"):
        parse(weights, ["a=x"])
    with pytest.raises(UsageError, match=r"^-rw: give KEY VALUE \(or KEY=VALUE\), not 'a'$"):
        parse(weights, ["a"])
    with pytest.raises(UsageError, match=r"^-rw: give KEY VALUE"):
        parse(weights, ["=3"])
    tags = question("compute_resources_tags", q.CLUSTER)
    assert parse(tags, ["team=ml", "cost=42"]) == {"team": "ml", "cost": "42"}  # str values


def test_parse_bool_passes_through() -> None:
    privileged = question("privileged", q.DEFINITION)
    assert parse(privileged, True) is True
    assert parse(privileged, False) is False
    assert parse(privileged, "yes") == "yes"  # typer already made it a bool; nothing to parse


# ---- walk on a terminal -----------------------------------------------------------------


def test_cluster_defaults_are_the_reference_defaults() -> None:
    answers = typed(q.CLUSTER, "c1" + ENTER + ENTER * 9)
    assert answers == {"name": "c1", **CLUSTER_DEFAULTS}
    spec = ClusterSpec.model_validate(to_spec(ResourceKind.CLUSTER, answers))
    assert spec.model_dump() == {"name": "c1", **CLUSTER_DEFAULTS}


def test_cluster_on_demand_skips_the_spot_questions() -> None:
    keys = "c1" + ENTER + ENTER * 3 + DOWN + ENTER + ENTER * 3
    answers = typed(q.CLUSTER, keys)
    assert answers["type"] == "ONDEMAND"
    assert "bid_percentage" not in answers and "allocation_strategy" not in answers
    assert list(answers) == [
        "name", "instance_list", "max_vcpus", "compute_envs", "type", "iam_policies",
        "main_region_image_name", "compute_resources_tags",
    ]  # fmt: skip
    ClusterSpec.model_validate(to_spec(ResourceKind.CLUSTER, answers))


def test_cluster_refuses_a_non_number_as_typed() -> None:
    # the default 1000 is in the field: "1000abc" is refused and the prompt stays
    keys = "c1" + ENTER + ENTER + "abc" + ENTER + BACKSPACE * 7 + "8" + ENTER + ENTER * 7
    answers = typed(q.CLUSTER, keys)
    assert answers["max_vcpus"] == 8
    assert answers["compute_envs"] == 3 and answers["type"] == "SPOT"


def test_cluster_typed_lists_and_tags() -> None:
    keys = (
        "c1" + ENTER
        + BACKSPACE * 20 + "c5.large, m5.large" + ENTER
        + ENTER * 3
        + "arn:a,arn:b" + ENTER
        + "ami-1" + ENTER
        + ENTER * 2
        + "team=ml" + ENTER
    )  # fmt: skip
    answers = typed(q.CLUSTER, keys)
    assert answers["instance_list"] == ["c5.large", "m5.large"]
    assert answers["iam_policies"] == ["arn:a", "arn:b"]
    assert answers["main_region_image_name"] == "ami-1"
    assert answers["compute_resources_tags"] == {"team": "ml"}


def test_queue_defaults_pick_the_cluster_and_automate() -> None:
    looked_up: list[str] = []

    def refs(kind: str) -> list[str]:
        looked_up.append(kind)
        return ["c1"]

    answers = typed(q.QUEUE, "q1" + ENTER + ENTER + ENTER + ENTER + ENTER, refs)
    assert answers == {
        "name": "q1",
        "compute_environment": "c1",
        "automate_region_weights": True,
        "default": False,
        "default_definition": "",
    }
    assert looked_up == ["clusters"]
    QueueSpec.model_validate(to_spec(ResourceKind.QUEUE, answers))


def test_queue_manual_weights_ask_one_weight_per_region() -> None:
    looked_up: list[str] = []

    def refs(kind: str) -> list[str]:
        looked_up.append(kind)
        return {"clusters": ["c0", "c1"], "regions": ["local", "pool"]}[kind]

    keys = "q1" + ENTER + DOWN + ENTER + "n" + ENTER + BACKSPACE + "3" + ENTER
    answers = typed(q.QUEUE, keys + "y" + "d1" + ENTER, refs)
    assert answers == {
        "name": "q1",
        "compute_environment": "c1",
        "automate_region_weights": False,
        "region_distribution_weights": {"local": 1, "pool": 3},
        "default": True,
        "default_definition": "d1",
    }
    assert looked_up == ["clusters", "regions"]
    spec = QueueSpec.model_validate(to_spec(ResourceKind.QUEUE, answers))
    assert spec.region_distribution_weights == {"local": 1, "pool": 3}


def test_queue_weight_must_be_a_whole_number() -> None:
    refs = {"clusters": ["c1"], "regions": ["local"]}.__getitem__
    keys = "q1" + ENTER + ENTER + "n" + BACKSPACE + "-2" + ENTER + BACKSPACE * 2 + "4" + ENTER
    answers = typed(q.QUEUE, keys + ENTER + ENTER, refs)
    assert answers["region_distribution_weights"] == {"local": 4}


def test_a_ref_with_nothing_to_choose_from_is_refused() -> None:
    with pytest.raises(UsageError, match="there is no clusters to choose from yet"):
        typed(q.QUEUE, "q1" + ENTER, lambda kind: [])


def test_definition_defaults() -> None:
    refs = {"images": ["native", "tools"]}.__getitem__
    answers = typed(q.DEFINITION, "d1" + ENTER + ENTER * 20, refs)
    assert answers["cyclone_image_name"] == "native" and "image_uri" not in answers
    assert answers["gpu_count"] == 0 and answers["timeout_minutes"] == 0
    spec = to_spec(ResourceKind.DEFINITION, answers)
    assert spec["gpu_count"] is None and spec["timeout_minutes"] is None  # 0: none
    definition = DefinitionSpec.model_validate(spec)
    assert definition == DefinitionSpec(name="d1")


def test_definition_with_an_image_uri_and_limits() -> None:
    keys = (
        "d1" + ENTER
        + "n"  # not a host image: asks for a URI instead
        + "repo/_REGION_/img:1" + ENTER
        + BACKSPACE + "10" + ENTER  # ratio
        + BACKSPACE + "2" + ENTER  # vcpus
        + ENTER * 3  # memory, CPUs of a job asking none, Linux parameters
        + '[{"name": "nofile", "softLimit": 1, "hardLimit": 2}]' + ENTER
        + ENTER * 2
        + BACKSPACE + "1" + ENTER  # gpus
        + "7" + ENTER  # its id (asked when there are GPUs)
        + '{"A": "1"}' + ENTER
        + "y"  # privileged
        + "app" + ENTER
        + BACKSPACE + "30" + ENTER  # timeout
        + ENTER
        + DOWN * 5 + ENTER  # JSON_FILE
        + ENTER + ENTER
        + BACKSPACE * 2 + "8" + ENTER  # output kept per attempt (MiB)
    )  # fmt: skip
    answers = typed(q.DEFINITION, keys)
    spec = DefinitionSpec.model_validate(to_spec(ResourceKind.DEFINITION, answers))
    assert (spec.use_cyclone_image, spec.image_uri) == (False, "repo/_REGION_/img:1")
    assert "cyclone_image_name" not in answers
    assert (spec.jobs_to_workers_ratio, spec.vcpus, spec.gpu_count) == (10, 2, 1)
    assert spec.gpu_ids == ["7"]
    assert spec.ulimits == [{"name": "nofile", "softLimit": 1, "hardLimit": 2}]
    assert spec.environment == {"A": "1"} and spec.privileged and spec.user == "app"
    assert spec.output_limit_mib == 8
    assert spec.timeout_minutes == 30 and spec.log_driver == "JSON_FILE"


def test_main_region_asks_no_network_questions_when_local() -> None:
    answers = typed(q.MAIN_REGION, "home" + ENTER + ENTER)
    assert answers == {"name": "home", "kind": "local"}
    spec = RegionSpec.model_validate(to_spec(ResourceKind.REGION, {**answers, "main_region": True}))
    assert spec.kind == "local" and spec.main_region


def test_region_asks_no_network_questions_when_static() -> None:
    answers = typed(q.REGION, "pool" + ENTER + ENTER)
    assert answers == {"name": "pool", "kind": "static"}


def test_main_region_on_aws_asks_the_network_questions() -> None:
    answers = typed(q.MAIN_REGION, "us-east-1" + ENTER + DOWN + ENTER + ENTER * 5)
    assert answers == {
        "name": "us-east-1",
        "kind": "aws",
        "import_vpc": True,
        "peer_with_main_region": False,
        "deploy_vpc_endpoints": "OFF",
        "subnet_config": "PRIVATE_WITH_NAT",
        "nat_gateways": 2,
    }
    RegionSpec.model_validate(to_spec(ResourceKind.REGION, answers))


@pytest.mark.parametrize(("typed_vpc", "field"), [("vpc-123", "vpc_id"), ("10.1.0.0/16", "cidr")])
def test_region_on_aws_with_its_own_vpc(typed_vpc: str, field: str) -> None:
    keys = (
        "eu-west-1" + ENTER  # kind: aws is given
        + "n" + typed_vpc + ENTER + ENTER + ENTER
        + DOWN + ENTER  # from PRIVATE_WITH_NAT round to PUBLIC: no NAT question
    )  # fmt: skip
    answers = typed(q.REGION, keys, given={"kind": "aws"})
    assert answers["vpc"] == typed_vpc and "nat_gateways" not in answers
    spec = to_spec(ResourceKind.REGION, answers)
    assert "vpc" not in spec and spec[field] == typed_vpc and spec["import_vpc"] is False
    region = RegionSpec.model_validate(spec)
    assert getattr(region, field) == typed_vpc and region.subnet_config == "PUBLIC"


def test_to_spec_turns_a_vpc_into_vpc_id_or_cidr() -> None:
    base = {"name": "r", "kind": "aws", "import_vpc": True}
    spec = to_spec(ResourceKind.REGION, {**base, "vpc": "vpc-123"})
    assert spec == {"name": "r", "kind": "aws", "import_vpc": False, "vpc_id": "vpc-123"}
    spec = to_spec(ResourceKind.REGION, {**base, "vpc": "10.0.0.0/16"})
    assert spec == {"name": "r", "kind": "aws", "import_vpc": False, "cidr": "10.0.0.0/16"}
    assert to_spec(ResourceKind.REGION, {**base, "vpc": ""}) == base
    assert to_spec(ResourceKind.REGION, base) == base
    # only definitions turn 0 into "none"
    assert to_spec(ResourceKind.CLUSTER, {"name": "c", "gpu_count": 0}) == {
        "name": "c",
        "gpu_count": 0,
    }
    assert to_spec(ResourceKind.DEFINITION, {"gpu_count": 2, "timeout_minutes": 5}) == {
        "gpu_count": 2,
        "timeout_minutes": 5,
    }


# ---- walk outside a terminal -------------------------------------------------------------


def test_no_terminal_names_every_missing_flag_in_order() -> None:
    assert missing_flags(refused(q.QUEUE, {})) == [
        "--name", "--compute-environment", "--automate-region-weights/--manual-region-weights",
    ]  # fmt: skip
    assert missing_flags(refused(q.REGION, {})) == ["--name", "--kind"]
    # --nat-gateways applies under the default subnets (PRIVATE_WITH_NAT)
    assert missing_flags(refused(q.REGION, {"kind": "aws"})) == [
        "--name", "--import-vpc/--new-vpc", "--peer-with-main-region/--no-peer-with-main-region",
        "--deploy-vpc-endpoints", "--subnet-config", "--nat-gateways",
    ]  # fmt: skip
    assert missing_flags(refused(q.REGION, {"kind": "aws", "import_vpc": False})) == [
        "--name", "--vpc", "--peer-with-main-region/--no-peer-with-main-region",
        "--deploy-vpc-endpoints", "--subnet-config", "--nat-gateways",
    ]  # fmt: skip
    flags = missing_flags(refused(q.DEFINITION, {"name": "d"}))
    assert flags[:3] == ["--use-cyclone-image/--use-image-uri", "--cyclone-image-name",
                         "--jobs-to-workers-ratio"]  # fmt: skip
    # neither --image-uri nor --gpu-ids (asked only for GPUs) is missing
    assert "--image-uri" not in flags and "--gpu-ids" not in flags
    assert len(flags) == len(q.DEFINITION) - 3
    flags = missing_flags(refused(q.DEFINITION, {"name": "d", "use_cyclone_image": False}))
    assert flags[0] == "--image-uri" and "--cyclone-image-name" not in flags


def test_no_terminal_only_questions_that_apply_to_given_answers() -> None:
    given = {"name": "q", "compute_environment": "c", "automate_region_weights": False}
    assert missing_flags(refused(q.QUEUE, given)) == ["-rw"]
    given = {"name": "c", "type": "ONDEMAND"}
    flags = missing_flags(refused(q.CLUSTER, given))
    assert "--bid-percentage" not in flags and "--allocation-strategy" not in flags
    flags = missing_flags(refused(q.CLUSTER, {"name": "c", "type": "spot"}))
    assert flags[-3:] == ["--bid-percentage", "--allocation-strategy", "--compute-resources-tags"]


def test_no_terminal_names_the_flags_that_apply_under_the_defaults() -> None:
    values = {
        "name": "c", "instance_list": "a", "max_vcpus": "1", "compute_envs": "1",
        "type": "SPOT", "iam_policies": "x", "main_region_image_name": "ami",
        "bid_percentage": "50", "allocation_strategy": "BEST_FIT",
        "compute_resources_tags": ["a=b"],
    }  # fmt: skip
    by_flag = {question.flag: question.key for question in q.CLUSTER}
    named = missing_flags(refused(q.CLUSTER, {}))
    given = {by_flag[flag]: values[by_flag[flag]] for flag in named}
    walk(q.CLUSTER, given, yes=False, refs=no_refs, prompt=False)  # one error named them all


def test_yes_takes_the_defaults_and_misses_only_default_less_flags() -> None:
    assert missing_flags(refused(q.CLUSTER, {}, yes=True)) == ["--name"]
    assert missing_flags(refused(q.QUEUE, {}, yes=True)) == ["--name", "--compute-environment"]
    assert missing_flags(refused(q.REPLACE_IMAGE, {}, yes=True)) == [
        "--name", "--local-docker-image"
    ]  # fmt: skip
    flags = missing_flags(refused(q.DEFINITION, {"use_cyclone_image": False}, yes=True))
    assert flags == ["--name", "--image-uri"]
    answers = walk(q.CLUSTER, {"name": "c1"}, yes=True, refs=no_refs, prompt=False)
    assert answers == {"name": "c1", **CLUSTER_DEFAULTS}
    answers = walk(q.IMAGE, {"name": "i"}, yes=True, refs=no_refs, prompt=False)
    assert answers == {"name": "i", "local_build_directory": "example-worker-image"}


def test_given_flags_win_over_defaults() -> None:
    given = {
        "name": "c1",
        "max_vcpus": "64",
        "type": "ondemand",
        "instance_list": "c5.large,m5.large",
        "compute_resources_tags": ["team=ml"],
        "iam_policies": [],  # an empty repeatable flag counts as not given
    }
    answers = walk(q.CLUSTER, given, yes=True, refs=no_refs, prompt=False)
    assert answers == {
        "name": "c1",
        "instance_list": ["c5.large", "m5.large"],
        "max_vcpus": 64,
        "compute_envs": 3,
        "type": "ONDEMAND",
        "iam_policies": [],
        "main_region_image_name": "",
        "compute_resources_tags": {"team": "ml"},
    }
    given = {"name": "q", "compute_environment": "c", "automate_region_weights": False,
             "region_distribution_weights": ["local=1", "pool=3"]}  # fmt: skip
    answers = walk(q.QUEUE, given, yes=False, refs=no_refs, prompt=False)
    assert answers["region_distribution_weights"] == {"local": 1, "pool": 3}
    given = {"name": "r", "kind": "aws", "import_vpc": False, "vpc": "vpc-9"}
    spec = to_spec(ResourceKind.REGION, walk(q.REGION, given, yes=True, refs=no_refs, prompt=False))
    assert (spec["import_vpc"], spec["vpc_id"]) == (False, "vpc-9")


def test_given_flags_are_checked_outside_a_terminal_too() -> None:
    with pytest.raises(UsageError, match="--max-vcpus: not a whole number"):
        walk(q.CLUSTER, {"name": "c", "max_vcpus": "many"}, yes=True, refs=no_refs, prompt=False)


def test_given_flags_are_not_asked_on_a_terminal() -> None:
    given = {"name": "c1", "instance_list": "a", "max_vcpus": "2", "compute_envs": "1"}
    answers = typed(q.CLUSTER, DOWN + ENTER + ENTER * 3, given=given)
    assert answers["max_vcpus"] == 2 and answers["type"] == "ONDEMAND"
    assert answers["instance_list"] == ["a"]


def test_a_given_vpc_is_not_dropped() -> None:
    given = {"name": "r", "kind": "aws", "vpc": "vpc-123"}
    spec = to_spec(ResourceKind.REGION, walk(q.REGION, given, yes=True, refs=no_refs, prompt=False))
    assert spec.get("vpc_id") == "vpc-123" and spec["import_vpc"] is False


def test_a_required_answer_may_not_be_empty() -> None:
    answers = typed(q.IMAGE, ENTER + "img" + ENTER + ENTER)
    assert answers["name"] == "img"


# ---- pair_arguments ----------------------------------------------------------------------


def test_pair_arguments() -> None:
    assert pair_arguments(["queues", "add-queue", "-rw", "us-east-1", "5", "--yes"]) == [
        "queues", "add-queue", "-rw", "us-east-1=5", "--yes",
    ]  # fmt: skip
    assert pair_arguments(["-rw", "a", "1", "--region-distribution-weights", "b", "2"]) == [
        "-rw", "a=1", "--region-distribution-weights", "b=2",
    ]  # fmt: skip
    assert pair_arguments(["--compute-resources-tags", "team", "ml"]) == [
        "--compute-resources-tags", "team=ml",
    ]  # fmt: skip
    assert pair_arguments(["-rw", "a=1", "-rw", "b=2"]) == ["-rw", "a=1", "-rw", "b=2"]
    assert pair_arguments(["--name", "x", "y", "--max-vcpus", "4"]) == [
        "--name", "x", "y", "--max-vcpus", "4",
    ]  # fmt: skip
    assert pair_arguments(["-rw", "a", "--yes"]) == ["-rw", "a", "--yes"]
    assert pair_arguments(["add-queue", "-rw", "a"]) == ["add-queue", "-rw", "a"]
    assert pair_arguments(["add-queue", "-rw"]) == ["add-queue", "-rw"]
    assert pair_arguments([]) == []


# ---- the generated commands ----------------------------------------------------------------


def _subcommands() -> list[tuple[str, str, Any]]:
    root = typer.main.get_command(make_app())
    return [
        (group_name, name, command)
        for group_name, group in root.commands.items()
        for name, command in getattr(group, "commands", {}).items()
    ]


def test_every_command_has_help() -> None:
    root = typer.main.get_command(make_app())
    for group_name, group in root.commands.items():
        assert group.help, f"hyper {group_name} has no help"
    commands = _subcommands()
    names = {(g, n) for g, n, _ in commands}
    for kind in ("cluster", "queue", "definition"):
        for verb in ("add", "update", "delete"):
            assert (f"{kind}s", f"{verb}-{kind}") in names
        assert (f"{kind}s", f"list-{kind}s") in names
    assert {("regions", "init-main-region"), ("images", "replace-with-local-image")} <= names
    for group_name, name, command in commands:
        assert command.help or command.short_help, f"hyper {group_name} {name} has no help"


def test_every_option_of_an_add_command_has_help() -> None:
    adds = [(g, n, c) for g, n, c in _subcommands() if n.startswith(("add-", "init-"))]
    assert {n for _, n, _ in adds} == {
        "init-main-region", "add-region", "add-cluster", "add-queue", "add-image",
        "add-definition",
    }  # fmt: skip
    for group_name, name, command in adds:
        for param in command.params:
            assert getattr(param, "help", None), f"hyper {group_name} {name} {param.opts}"
    _, _, add_cluster = next(c for c in adds if c[1] == "add-cluster")
    flags = {flag for param in add_cluster.params for flag in param.opts}
    assert {question.flag for question in q.CLUSTER} <= flags | {"--max-vcpus"}
    assert "--max-vCPUs" in flags and "--yes" in flags


def test_add_command_help_runs() -> None:
    result = CliRunner().invoke(make_app(), ["clusters", "add-cluster", "--help"])
    assert result.exit_code == 0 and "--max-vcpus" in result.stdout
