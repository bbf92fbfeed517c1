"""`somnet` imports only the command it runs, so its table of commands must name each
command's module exactly as the modules register them."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from cli.main import COMMAND_MODULES, main


def test_the_table_names_what_each_module_registers() -> None:
    registered = {}
    for name in dict.fromkeys(COMMAND_MODULES.values()):
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"cli.{name}").register(subparsers)
        registered.update(dict.fromkeys(subparsers.choices, name))
    assert registered == COMMAND_MODULES


def test_running_a_node_imports_no_other_command() -> None:
    probe = (
        "import sys; from cli.main import build_parser; build_parser('run');"
        "print(*sorted(m for m in sys.modules if m.startswith('cli.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    imported = set(done.stdout.split())
    for other in ("cli.bench", "cli.anchor", "cli.gov", "cli.load", "cli.sim"):
        assert other not in imported, imported


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMAND_MODULES)


def test_version_and_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("somnet ")
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
