"""The shell tools' quick reading of a command line (qtools.command_line) agrees with
argparse's on every command line it reads, reads the common ones, and leaves the rest
(help, errors, unusual forms) to argparse."""

from __future__ import annotations

import random

import pytest

from qtools import qdel, qlog, qstat, qsub
from qtools.command_line import ArgumentParser, Namespace

PARSERS = {
    "qsub": qsub.build_parser,
    "qstat": qstat.build_parser,
    "qdel": lambda: qdel.build_parser("qdel"),
    "qhold": lambda: qdel.build_parser("qhold"),
    "qlog": qlog.build_parser,
}

# command lines users and tools type: the quick reading must take each one
PLAIN = {
    "qsub": [
        ["job.sh"],
        ["-h", "-q", "sample-queue-1", "-d", "sample-def-1", "true.sh"],
        ["-N", "name", "-l", "walltime=1:00:00", "-l", "select=1:ncpus=2", "job.sh"],
        ["-j", "oe", "-o", "out.%j", "-v", "A=1", "-v", "B=2", "-V", "job.sh", "a", "b"],
        ["--array", "1-10%2", "--priority", "5", "--dry-run", "job.sh"],
        ["-W", "depend=afterok:12", "-c", "echo hi", "--wait"],
        ["--padding=4", "--workitems", "01-16", "--directives", "none", "job.sh"],
        ["-p", '{"X": "1"}', "--cpus", "2", "--mem", "1G", "--gpus", "0", "-"],
        ["--host", "local", "job.sh", "x y", "-"],
        [],
    ],
    "qstat": [
        [],
        ["-q", "sample-queue-1", "--limit", "20"],
        ["-f", "Running", "-o"],
        ["-o", "--json"],
        ["-i", "12", "-i", "13_2", "--json"],
        ["--after", "100", "--noheader", "--expand", "-a", "12"],
        ["12", "13"],
        ["-x", "-u", "me", "-F", "json"],
    ],
    "qdel": [["12"], ["12", "13[1-3]", "14_2"], ["-q", "Q", "-f", "Waiting"], ["-j", "x", "-"]],
    "qhold": [["12"], ["-i", "12", "-i", "13"]],
    "qlog": [["12"], ["-t", "ALL", "-f", "12"], ["-i", "12", "-q", "Q"], []],
}

# what argparse must read: help, errors, abbreviations, clusters, `--`, late options...
UNPLAIN = [
    ["--help"],
    ["-h"],
    ["--version"],
    ["--que", "Q"],
    ["-qQ"],
    ["-q"],
    ["-q", "-x"],
    ["--", "job.sh"],
    ["job.sh", "-q", "Q"],
    ["--limit", "ten"],
    ["--limit", "-1"],
    ["--directives", "some"],
    ["--no-such-option"],
    ["-Vh", "job.sh"],
    ["a", "b", "c"],
    ["-o=yes"],
    ["\udcff"],
]


def readings(parser: ArgumentParser, argv: list[str]) -> tuple[object, object]:
    """(the quick reading or None, argparse's reading or "error")."""
    quick = parser.read_plain(argv)
    try:
        full: object = vars(parser.full().parse_args(argv, Namespace()))
    except SystemExit:
        full = "error"
    return (None if quick is None else vars(quick)), full


@pytest.mark.parametrize("command", PARSERS)
def test_plain_command_lines_are_read_quickly_as_argparse_reads_them(command, capsys) -> None:
    for argv in PLAIN[command]:
        quick, full = readings(PARSERS[command](), argv)
        assert quick is not None, argv
        assert quick == full, argv


@pytest.mark.parametrize("command", PARSERS)
def test_other_command_lines_are_argparses(command, capsys) -> None:
    for argv in UNPLAIN:
        quick, full = readings(PARSERS[command](), argv)
        assert quick is None or quick == full, argv


def _words(parser: ArgumentParser, rng: random.Random) -> list[str]:
    flags = [flag for declared in parser._declared for flag in declared.flags]
    values = ["x", "12", "-1", "-", "", "a b", "oe", "Running", "json", "1-3", "--", "=", "-q"]
    words: list[str] = []
    for _ in range(rng.randrange(6)):
        kind = rng.random()
        if kind < 0.6:
            flag = rng.choice(flags)
            words.append(f"{flag}={rng.choice(values)}" if rng.random() < 0.1 else flag)
            if rng.random() < 0.7:
                words.append(rng.choice(values))
        else:
            words.append(rng.choice(values))
    return words


@pytest.mark.parametrize("command", PARSERS)
def test_random_command_lines_read_alike(command, capsys) -> None:
    """Seeded random command lines: wherever the quick reading answers, argparse agrees."""
    rng = random.Random(21)
    parser = PARSERS[command]()
    read = 0
    for _ in range(1500):
        argv = _words(parser, rng)
        quick, full = readings(parser, argv)
        assert quick is None or quick == full, argv
        read += quick is not None
    assert read > 100  # the quick reading is exercised, not only refused


def test_help_and_errors_are_argparses(capsys) -> None:
    parser = qsub.build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: qsub")
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--padding", "x", "job.sh"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "qsub: argument --padding: invalid int value: 'x' (see qsub --help)\n"
    )


@pytest.mark.parametrize("command", PARSERS)
def test_help_is_argparses(command) -> None:
    """The help of the same declarations made on argparse itself: hidden options hidden."""
    import argparse

    from qtools.arguments import FullParser
    from qtools.command_line import SUPPRESS

    quick = PARSERS[command]()
    direct = FullParser(*quick._args, **quick._kwargs)
    for flags, settings in quick._calls:
        same = {k: argparse.SUPPRESS if v is SUPPRESS else v for k, v in settings.items()}
        direct.add_argument(*flags, **same)
    assert quick.format_help() == direct.format_help()
    assert "SUPPRESS" not in quick.format_help()


def test_later_declarations_replace_earlier_ones() -> None:
    """conflict_handler="resolve", as argparse: an option spelled again is the new one,
    and one left without any spelling is gone (its default too)."""
    parser = ArgumentParser(prog="t")
    parser.add_argument("-x", "--ex", dest="first", default="one")
    parser.add_argument("-y", dest="second", default="two")
    parser.add_argument("-y", dest="third", action="store_true")
    parser.add_argument("-h", dest="hold", action="store_true")
    for argv in ([], ["-y"], ["-x", "1", "-h"], ["--ex=2"]):
        quick, full = readings(parser, argv)
        assert quick is not None and quick == full, argv
    assert "second" not in vars(parser.parse_args([]))
