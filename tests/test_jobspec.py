"""The small option languages of hyper.jobspec: what each parser takes, exactly what it
makes of it, and how it refuses what it cannot read."""

from __future__ import annotations

import pytest

from hyper import jobspec
from hyper.errors import UsageError
from hyper.jobspec import (
    MAX_ARRAY_INDEX,
    MAX_ARRAY_SIZE,
    ArrayRange,
    Dependency,
    Selector,
    check_env_name,
    expand_output_pattern,
    expand_work_items,
    parse_array,
    parse_dependencies,
    parse_env_pair,
    parse_selector,
    parse_time_limit,
)

# ---- parse_array --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "indices", "cap"),
    [
        ("7", [7], None),
        ("0", [0], None),
        ("1-5", [1, 2, 3, 4, 5], None),
        ("3-3", [3], None),
        ("0-100:5", list(range(0, 101, 5)), None),
        ("1-10:3", [1, 4, 7, 10], None),
        ("1-10:4", [1, 5, 9], None),
        ("1-3:100", [1], None),
        ("1,3,5-9", [1, 3, 5, 6, 7, 8, 9], None),
        ("1-10%4", list(range(1, 11)), 4),
        ("0-100:5%1", list(range(0, 101, 5)), 1),
        ("1,3,5-9%2", [1, 3, 5, 6, 7, 8, 9], 2),
        ("5-9,1,3", [1, 3, 5, 6, 7, 8, 9], None),  # sorted
        ("1-5,3-7,5", [1, 2, 3, 4, 5, 6, 7], None),  # duplicates removed
        ("2,2,2", [2], None),
        ("  1-3  ", [1, 2, 3], None),
        ("1 - 3, 5", [1, 2, 3, 5], None),
        (f"{MAX_ARRAY_INDEX}", [MAX_ARRAY_INDEX], None),
    ],
)
def test_array_forms(spec: str, indices: list[int], cap: int | None) -> None:
    parsed = parse_array(spec)
    assert ArrayRange(list(parsed.indices), parsed.cap) == ArrayRange(indices, cap)


def test_one_range_is_kept_as_a_range() -> None:
    """A million tasks are not a list of a million made twice per submit (qsub, host)."""
    assert parse_array("1-1000000%5") == ArrayRange(range(1, 1_000_001), 5)
    assert parse_array("0-100:5").indices == range(0, 101, 5)


def test_array_zero_to_100_step_5_has_21_tasks() -> None:
    parsed = parse_array("0-100:5")
    assert len(parsed.indices) == 21
    assert list(parsed.indices[:3]) == [0, 5, 10]
    assert parsed.indices[-1] == 100


@pytest.fixture
def small_max(monkeypatch: pytest.MonkeyPatch) -> int:
    """A maximum of 10 tasks, so the size limits are tested without a million-item list."""
    monkeypatch.setattr(jobspec, "MAX_ARRAY_SIZE", 10)
    return 10


def test_array_of_exactly_the_maximum_size_is_taken(small_max: int) -> None:
    assert list(parse_array("1-10").indices) == list(range(1, 11))
    assert list(parse_array("1-5,6-10").indices) == list(range(1, 11))
    assert list(parse_array("0-18:2").indices) == list(range(0, 19, 2))


@pytest.mark.parametrize("spec", ["1-11", "0-10", "1-5,6-11", "1-10,20", "0-20:2"])
def test_array_over_the_maximum_size_is_refused(small_max: int, spec: str) -> None:
    with pytest.raises(UsageError, match=f"array {spec!r}: more than 10 tasks"):
        parse_array(spec)


def test_array_size_limit_at_the_real_maximum() -> None:
    assert MAX_ARRAY_SIZE == 1_000_000
    with pytest.raises(UsageError, match="more than 1000000 tasks"):
        parse_array("1-1000001")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5-1", "'5-1' is an empty range"),
        ("1-3,9-2", "'9-2' is an empty range"),
        ("1-10:0", "is an empty range"),
        ("1-10%0", "the cap after % must be a whole number of 1 or more"),
        ("1-10%x", "the cap after % must be a whole number"),
        ("1-10%-1", "the cap after % must be a whole number"),
        ("1-10%2%3", "the cap after % must be a whole number"),
        ("a-b", "cannot read 'a-b'"),
        ("", "cannot read ''"),
        ("1,,3", "cannot read ''"),
        ("1-", "cannot read '1-'"),
        ("-3", "cannot read '-3'"),
        ("1-10:", "cannot read '1-10:'"),
        ("1:2", "cannot read '1:2'"),
        ("1.5", "cannot read '1.5'"),
        ("%4", "cannot read ''"),
        (f"1-{MAX_ARRAY_SIZE + 1}", f"more than {MAX_ARRAY_SIZE} tasks"),
        (f"0-{MAX_ARRAY_SIZE}", f"more than {MAX_ARRAY_SIZE} tasks"),
        (f"{MAX_ARRAY_INDEX + 1}", f"indices go up to {MAX_ARRAY_INDEX}"),
        (f"1-{MAX_ARRAY_INDEX + 1}:{MAX_ARRAY_INDEX}", f"indices go up to {MAX_ARRAY_INDEX}"),
    ],
)
def test_array_refusals(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_array(spec)
    assert message in str(caught.value)
    assert repr(spec) in str(caught.value)  # the message names what was given


def test_array_with_an_empty_cap_is_refused() -> None:
    # "1-10%": a % promises a cap; saying none is a mistake, not "no cap"
    with pytest.raises(UsageError, match="the cap after % must be"):
        parse_array("1-10%")


def test_array_error_suggests_the_forms() -> None:
    with pytest.raises(UsageError, match=r"use forms like 1-10, 0-100:5, 1,3,5-9, %4"):
        parse_array("x")


def test_large_sparse_array_is_taken_quickly() -> None:
    parsed = parse_array(f"0-{MAX_ARRAY_INDEX}:{MAX_ARRAY_INDEX // 4}")
    assert list(parsed.indices) == [0, 1_000_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000]


def test_array_cap_with_a_non_ascii_digit_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_array("1-3%\u00b2")


# ---- expand_work_items --------------------------------------------------------------


def test_work_items_cloudburst_example() -> None:
    items = expand_work_items("01-16", prefix="Dam001/Period", padding=2)
    assert items == [f"Dam001/Period{n:02d}" for n in range(1, 17)]
    assert items[0] == "Dam001/Period01"
    assert items[-1] == "Dam001/Period16"


@pytest.mark.parametrize(
    ("spec", "prefix", "padding", "items"),
    [
        ("1-3", "", 3, ["001", "002", "003"]),
        ("1-3", "", 1, ["1", "2", "3"]),
        ("1-3", "", 0, ["1", "2", "3"]),
        ("001-003", "", 1, ["001", "002", "003"]),  # width from the text written
        ("001-003", "", 2, ["001", "002", "003"]),
        ("01-03", "", 3, ["001", "002", "003"]),  # the wider of the two
        ("8-11", "", 1, ["8", "9", "10", "11"]),
        ("98-101", "", 2, ["98", "99", "100", "101"]),
        ("5-5", "p", 2, ["p05"]),
        ("a-b,c", "", 3, ["a-b", "c"]),  # not two numbers: a name
        ("a-b,c", "x/", 3, ["x/a-b", "x/c"]),
        ("alpha, beta ,gamma", "", 3, ["alpha", "beta", "gamma"]),
        ("1-2,x,9", "P", 2, ["P01", "P02", "Px", "P9"]),  # a single number is a name
        ("a,,b,", "", 3, ["a", "b"]),  # empty parts skipped
        ("1-2,1-2", "", 1, ["1", "2", "1", "2"]),  # kept as given, in order
        ("run-01-02", "", 3, ["run-01-02"]),
    ],
)
def test_work_item_forms(spec: str, prefix: str, padding: int, items: list[str]) -> None:
    assert expand_work_items(spec, prefix, padding) == items


def test_work_items_default_padding_is_three() -> None:
    assert expand_work_items("9-10") == ["009", "010"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5-1", "work items '5-1': '5-1' is an empty range"),
        ("1-2,16-01", "'16-01' is an empty range"),
        ("", "no work items given"),
        (" , ,", "no work items given"),
        (f"0-{MAX_ARRAY_SIZE}", f"more than {MAX_ARRAY_SIZE} items"),
    ],
)
def test_work_item_refusals(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        expand_work_items(spec)


def test_work_items_of_exactly_the_maximum_are_taken(small_max: int) -> None:
    assert len(expand_work_items("1-10", padding=1)) == 10
    with pytest.raises(UsageError, match="more than 10 items"):
        expand_work_items("1-11", padding=1)


def test_work_items_total_is_bounded(small_max: int) -> None:
    with pytest.raises(UsageError, match="more than 10 items"):
        expand_work_items("1-10,1-10", padding=1)


# ---- parse_time_limit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),  # MINUTES
        ("1", 60),
        ("0:30", 30),  # MM:SS
        ("2:30", 150),
        ("0:02", 2),
        ("1:30:00", 5400),  # HH:MM:SS
        ("01:00:00", 3600),
        ("0:0:1", 1),
        ("100:00:00", 360000),
        ("1-0", 86400),  # D-HH
        ("2-12", 2 * 86400 + 12 * 3600),
        ("1-2:30", 86400 + 2 * 3600 + 30 * 60),  # D-HH:MM
        ("1-2:03:04", 86400 + 2 * 3600 + 3 * 60 + 4),  # D-HH:MM:SS
        ("0-0:0:5", 5),
        ("  90  ", 5400),
        ("1:75", 135),  # fields are not range-checked, only summed
    ],
)
def test_time_limit_forms(text: str, seconds: int) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "time limit '0' must be above zero"),
        ("0:00", "must be above zero"),
        ("0:00:00", "must be above zero"),
        ("0-0", "must be above zero"),
        ("abc", "time limit 'abc': use MINUTES, MM:SS, HH:MM:SS or D-HH:MM:SS"),
        ("", "time limit '': use MINUTES"),
        ("   ", "use MINUTES"),
        ("1:2:3:4", "use MINUTES"),
        ("-5", "use MINUTES"),
        ("1-", "use MINUTES"),
        ("1.5", "use MINUTES"),
        ("1h", "use MINUTES"),
        ("UNLIMITED", "use MINUTES"),
        (":30", "use MINUTES"),
    ],
)
def test_time_limit_refusals(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_time_limit(text)


# ---- parse_dependencies ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "deps"),
    [
        ("afterok:12", [("afterok", 12)]),
        ("afterok:12:13", [("afterok", 12), ("afterok", 13)]),
        ("afterok:12:13,afterany:14", [("afterok", 12), ("afterok", 13), ("afterany", 14)]),
        ("afternotok:5", [("afternotok", 5)]),
        ("aftercorr:6", [("aftercorr", 6)]),
        ("depend=afterok:1:2,afterany:3", [("afterok", 1), ("afterok", 2), ("afterany", 3)]),
        ("depend=afterok:1", [("afterok", 1)]),
        ("  afterok:1 , afterany:2  ", [("afterok", 1), ("afterany", 2)]),
        ("afterok:1::2:", [("afterok", 1), ("afterok", 2)]),  # empty ids skipped
        ("afterok:007", [("afterok", 7)]),
    ],
)
def test_dependency_forms(text: str, deps: list[tuple[str, int]]) -> None:
    assert parse_dependencies(text) == [Dependency(kind, target) for kind, target in deps]


def test_dependency_kinds_are_the_four_slurm_ones() -> None:
    assert jobspec.DEPENDENCY_KINDS == ("afterok", "afterany", "afternotok", "aftercorr")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("after:1", "unknown type 'after'; use afterok, afterany, afternotok, aftercorr"),
        ("singleton", "unknown type 'singleton'"),
        ("AFTEROK:1", "unknown type 'AFTEROK'"),
        ("depend=before:1", "unknown type 'before'"),
        ("", "unknown type ''"),
        ("afterok:1,", "unknown type ''"),
        ("afterok", "afterok needs job ids, as afterok:ID[:ID...]"),
        ("afterok:", "afterok needs job ids"),
        ("afterany::", "afterany needs job ids"),
        ("afterok:1,afternotok", "afternotok needs job ids"),
        ("afterok:abc", "'abc' is not a job id"),
        ("afterok:1:x2", "'x2' is not a job id"),
        ("afterok:-1", "'-1' is not a job id"),
        ("afterok:12.server", "'12.server' is not a job id"),
        ("afterok:3_1", "'3_1' is not a job id"),
        ("afterok: 1", "' 1' is not a job id"),
    ],
)
def test_dependency_refusals(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_dependencies(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"dependency {text!r}")


def test_slurm_any_of_dependencies_is_not_read_as_all_of() -> None:
    with pytest.raises(UsageError):
        parse_dependencies("afterok:1?afterok:2")


def test_dependency_with_a_non_ascii_digit_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_dependencies("afterok:\u00b2")


# ---- environment names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("A=1", ("A", "1")),
        ("_x=", ("_x", "")),
        ("PATH2=a=b=c", ("PATH2", "a=b=c")),
        ("X= spaced value ", ("X", " spaced value ")),
        ("lower_case=ok", ("lower_case", "ok")),
    ],
)
def test_env_pairs(text: str, pair: tuple[str, str]) -> None:
    assert parse_env_pair(text) == pair


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NOVALUE", "'NOVALUE': give variables as NAME=VALUE"),
        ("1BAD=x", "'1BAD' is not a valid environment variable name"),
        ("=x", "'' is not a valid environment variable name"),
        ("A-B=x", "'A-B' is not a valid environment variable name"),
        ("A B=x", "'A B' is not a valid environment variable name"),
        ("É=x", "'É' is not a valid environment variable name"),
    ],
)
def test_env_pair_refusals(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_env_pair(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["A", "_", "a1", "SLURM_JOB_ID", "_9_"])
def test_env_names_accepted(name: str) -> None:
    assert check_env_name(name) == name


@pytest.mark.parametrize("name", ["", "9", "A.B", "A$", " A", "A ", "A=B", "ÄB"])
def test_env_names_refused(name: str) -> None:
    with pytest.raises(UsageError, match="is not a valid environment variable name"):
        check_env_name(name)


def test_env_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(UsageError):
        check_env_name("FOO\n")


# ---- parse_selector -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "selector"),
    [
        ("12", Selector(12)),
        ("  12  ", Selector(12)),
        ("0", Selector(0)),
        ("12[3-5]", Selector(12, (3, 4, 5))),
        ("12[1-3,7]", Selector(12, (1, 2, 3, 7))),
        ("12[7,1-3]", Selector(12, (1, 2, 3, 7))),
        ("12[0-10:5]", Selector(12, (0, 5, 10))),
        ("12[4]", Selector(12, (4,))),
        ("12_3", Selector(12, (3,))),
        ("12_0", Selector(12, (0,))),
    ],
)
def test_selector_forms(text: str, selector: Selector) -> None:
    assert parse_selector(text) == selector


def test_selector_indices_are_a_tuple() -> None:
    assert isinstance(parse_selector("5[1-2]").indices, tuple)
    assert parse_selector("5").indices is None


@pytest.mark.parametrize(
    "text",
    ["", "abc", "-1", "12x", "12[]", "12[a]", "12[1-3%2]", "12_", "12_a", "12[1]_2", "1 2", "#12"],
)
def test_selector_refusals(text: str) -> None:
    with pytest.raises(UsageError, match=r"not a job id: .* \(use ID, ARRAY_ID\[1-5\]"):
        parse_selector(text)


@pytest.mark.parametrize(
    ("text", "message"), [("12[5-1]", "empty range"), ("12[1,,2]", "cannot read")]
)
def test_selector_bad_index_lists_say_why(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_selector(text)


# ---- expand_output_pattern ------------------------------------------------------


def _expand(pattern: str, index: int | None = 3) -> str:
    return expand_output_pattern(
        pattern, job_id=42, array_id=40, index=index, name="sim", user="ann"
    )


@pytest.mark.parametrize(
    ("pattern", "result"),
    [
        ("out.txt", "out.txt"),
        ("%j.out", "42.out"),
        ("%A_%a.out", "40_3.out"),
        ("%x-%u-%j", "sim-ann-42"),
        ("logs/%x/%A/%a.log", "logs/sim/40/3.log"),
        ("100%%", "100%"),
        ("%%j", "%j"),  # an escaped percent, then a literal j
        ("%%%j", "%42"),
        ("%%%%", "%%"),
        ("%q.out", "%q.out"),  # unknown: left alone
        # sbatch(1): "%J jobid.stepid of the running job" (the batch step has no number),
        # "%n Node identifier relative to current job", "%s stepid", "%t task identifier
        # (rank) relative to current job", "A number placed between the percent character
        # and format specifier may be used to zero-pad the result"
        ("%J %I", "42 %I"),
        ("%n-%s-%t-%5a-%3j", "0-batch-0-00003-042"),
        ("end%", "end%"),
        ("%j%j", "4242"),
    ],
)
def test_output_patterns(pattern: str, result: str) -> None:
    assert _expand(pattern) == result


def test_output_pattern_index_defaults_to_zero_outside_arrays() -> None:
    assert _expand("%a-%A", index=None) == "0-40"


def test_output_pattern_values_are_not_expanded_again() -> None:
    got = expand_output_pattern("%x", job_id=1, array_id=1, index=0, name="%j", user="u")
    assert got == "%j"


@pytest.mark.parametrize(
    "name",
    ["a", "job.sh", "...", "....", ".a", "a.", "with space", "é", "", ".", "..", "a/b",
     "a\nb", "a\tb", "\x7f", "\x9f", "a\u2028", "\xa0", "./", ".\n"],
)  # fmt: skip
def test_job_name_rule_is_the_pattern_pydantic_checks(name: str) -> None:
    """is_job_name (the shell tools' check) and JOB_NAME_PATTERN (the host's) agree."""
    import re

    assert jobspec.is_job_name(name) == bool(re.fullmatch(jobspec.JOB_NAME_PATTERN, name))
