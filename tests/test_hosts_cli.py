"""`hyper hosts`: every command through the CLI, the walkthrough with piped input,
and the refusal to prompt without a terminal."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from hyper import config, local_host
from hyper.cli import COMMANDS, GROUPS, main, make_app
from hyper.cli.hosts import ask_host_request
from hyper.hosts import HostRequest


def hyper(*argv: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(make_app(), list(argv), input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def created(hyper_home: Path):
    code, _, err = hyper("hosts", "create-host", "--name", "alpha", "--yes")
    assert code == 0, err
    yield config.load_host("alpha")
    if "alpha" in config.list_host_names():
        local_host.stop(config.load_host("alpha"))


def test_create_start_status_stop(created: config.HostConfig) -> None:
    assert config.current_host_name() == "alpha"
    assert local_host.status(created).running
    code, out, _ = hyper("hosts", "host-status", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["health"]["status"] == "ok" and info["name"] == "alpha"
    assert hyper("hosts", "stop-host")[0] == 0
    assert not local_host.status(created).running
    code, out, _ = hyper("hosts", "host-status", "alpha")
    assert code == 1 and "running   False" in out
    assert hyper("hosts", "start-host", "--host", "alpha")[0] == 0
    assert local_host.status(created).running


def test_credentials_are_private_and_the_key_hidden(created: config.HostConfig) -> None:
    path = config.host_file("alpha")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = hyper("hosts", "list-hosts", "--json")[1]
    rows = json.loads(out)["hosts"]
    assert rows[0]["api_key"] == "********" and rows[0]["in_use"] and rows[0]["state"] == "running"
    assert created.api_key not in hyper("hosts", "list-hosts")[1]
    assert (
        json.loads(hyper("hosts", "list-hosts", "--json", "--show-key")[1])["hosts"][0]["api_key"]
        == created.api_key
    )


def test_create_refuses_duplicates_and_bad_names(created: config.HostConfig) -> None:
    code, _, err = hyper("hosts", "create-host", "--name", "alpha", "--yes")
    assert code == 2 and "already exists" in err
    code, _, err = hyper("hosts", "create-host", "--name", "bad/name", "--yes")
    assert code == 2 and "invalid host name" in err
    code, _, err = hyper("hosts", "create-host", "--name", "x", "--provider", "gcp", "--yes")
    assert code == 2 and "provider 'gcp' is not available" in err


def test_no_prompt_without_a_terminal(hyper_home: Path) -> None:
    code, _, err = hyper("hosts", "create-host")
    assert code == 2 and "missing --name" in err and "not a terminal" in err
    assert config.list_host_names() == []


def test_walkthrough_with_piped_answers(hyper_home: Path) -> None:
    with create_pipe_input() as pipe:
        pipe.send_text("\x7f" * 5 + "bravo\r")  # erase the default, type a name
        pipe.send_text("\r")  # keep the default provider
        request = ask_host_request(HostRequest(), input=pipe, output=DummyOutput())
    assert request == HostRequest(name="bravo", provider="local")


def test_walkthrough_for_an_aws_host_in_an_existing_vpc_offers_its_subnets(
    hyper_home: Path, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws

    from tests.helpers.aws_host import vpc_with_subnets

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        vpc, subnets = vpc_with_subnets("eu-west-1", "10.5")
        with create_pipe_input() as pipe:
            pipe.send_text("\x7f" * 5 + "cloud\r")  # the name
            pipe.send_text("\x1b[B\r")  # provider: aws
            pipe.send_text("\r\r")  # the region from the environment; yes, this account
            pipe.send_text("\x7f" * 11 + vpc + "\r")  # an existing VPC
            pipe.send_text(" \r")  # all three offered and ticked: untick the first
            pipe.send_text("\r")  # no dashboard
            request = ask_host_request(HostRequest(), input=pipe, output=DummyOutput())
    assert (request.provider, request.region, request.vpc) == ("aws", "eu-west-1", vpc)
    assert request.subnets == ",".join(sorted(subnets)[1:])  # offered by id, private first


def test_walkthrough_validates_names_as_typed(hyper_home: Path) -> None:
    with create_pipe_input() as pipe:
        pipe.send_text("\x7f" * 5 + "no/slash\r")  # refused: stays on the question
        pipe.send_text("\x7f" * 8 + "ok-name\r\r")
        request = ask_host_request(HostRequest(), input=pipe, output=DummyOutput())
    assert request.name == "ok-name"


def test_select_and_delete(created: config.HostConfig, tmp_path: Path) -> None:
    code, _, err = hyper("hosts", "select-host", "nosuch")
    assert code == 2 and "no host named 'nosuch'" in err
    data_dir = Path(created.data_dir or "")
    code, _, err = hyper("hosts", "delete-host")
    assert code == 2 and "--yes" in err and data_dir.is_dir()
    assert hyper("hosts", "delete-host", "--yes")[0] == 0
    assert not data_dir.exists() and config.list_host_names() == []
    assert not local_host.status(created).running


def test_delete_can_keep_data(created: config.HostConfig) -> None:
    assert hyper("hosts", "delete-host", "alpha", "--keep-data")[0] == 0
    assert Path(created.data_dir or "", "hyper.db").exists()


def test_update_host_restarts_on_a_given_port(created: config.HostConfig) -> None:
    old_pid = local_host.status(created).pid
    code, _, err = hyper("hosts", "update-host", "--port", "0")
    assert code == 0, err
    state = local_host.status(config.load_host("alpha"))
    assert state.running and state.pid != old_pid


def test_import_deployment(hyper_home: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("secret-key\n")
    code, _, err = hyper(
        "hosts",
        "import-deployment",
        "--name",
        "remote1",
        "--url",
        "https://example.invalid/api/",
        "--api-key-file",
        str(key_file),
    )
    assert code == 0, err
    saved = config.load_host("remote1")
    assert (saved.url, saved.api_key, saved.provider) == (
        "https://example.invalid/api",
        "secret-key",
        "remote",
    )
    code, _, err = hyper("hosts", "import-deployment", "--name", "r2", "--url", "ftp://x")
    assert code == 2
    code, _, err = hyper("hosts", "import-deployment", "--name", "r3", "--url", "http://x")
    assert code == 2 and "--api-key" in err


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], hyper_home: Path) -> None:
    assert main(["hosts", "create-host", "--port", "notanumber"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hyper: ")
    assert main(["hosts", "select-host", "ghost"]) == 2
    assert capsys.readouterr().err == "hyper: no host named 'ghost' (saved hosts: none)\n"


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    for name, command in click_group.commands.items():
        yield (*prefix, name), command


def test_every_command_has_help() -> None:
    for path, command in _commands(make_app()):
        assert command.help or command.short_help, f"hyper {' '.join(path)} has no help"
        for sub in getattr(command, "commands", {}).values():
            assert sub.help, f"hyper {' '.join(path)} {sub.name} has no help"
            code, out, _ = hyper(*path, sub.name, "--help")
            assert code == 0 and "Usage" in out


def test_a_command_loads_only_its_own_group_and_reads_as_in_the_whole_app() -> None:
    """`hyper GROUP ...` builds the app with that group alone (`hyper dialect-path` and
    `hyper dashboard` with no group): every command's help reads as in the whole app's,
    and the other groups' modules are not imported."""
    import typer.main

    whole = make_app()
    for name in (*GROUPS, *COMMANDS):
        alone = make_app(name)
        shown = set(typer.main.get_command(alone).commands)
        assert shown == ({name} if name in GROUPS else set()) | set(COMMANDS), name
        group = typer.main.get_command(whole).commands[name]
        for argv in [
            [name, "--help"],
            *([name, sub, "--help"] for sub in getattr(group, "commands", {})),
        ]:
            ours, theirs = CliRunner().invoke(alone, argv), CliRunner().invoke(whole, argv)
            assert (ours.exit_code, ours.stdout) == (theirs.exit_code, theirs.stdout), argv
    script = (
        "import sys\nfrom hyper.cli import main\nmain(sys.argv[1:])\nprint(sorted(sys.modules))"
    )
    for argv, kept in ((["queues", "list-queues", "--help"], "hyper.cli.resources"),
                       (["dialect-path", "--help"], "hyper.cli.dialects")):  # fmt: skip
        loaded = subprocess.run(
            [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True
        ).stdout
        assert f"'{kept}'" in loaded
        for other in (
            "hyper.cli.hosts",
            "hyper.cli.workflows",
            "hyper.cli.worker",
            "hyper.cli.data",
        ):
            assert f"'{other}'" not in loaded, (argv, other)
