"""`somnet sim`: exit codes, the JSON last line, replay lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from cli.sim import replay_command
from consensus.sim import SimParams, rotation_changes

ROOT = Path(__file__).resolve().parents[2]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_clean_run_exits_zero_with_json_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "--validators", "4", "--seeds", "3", "--first-seed", "5", "--faults", "none"]
    code, out, _ = run_cli([*argv, "--heights", "3", "--json"], capsys)
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["seeds"] == 3
    assert summary["violations"] == 0
    assert summary["failed_seeds"] == []
    assert summary["decided_heights"] == 9
    assert summary["wall_seconds"] >= 0
    assert "FAIL" not in out


def test_failing_seed_prints_a_replay_command_that_fails_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["sim", "--validators", "4", "--byzantine", "2", "--allow-unsafe", "--faults", "none"]
    code, out, _ = run_cli([*argv, "--seeds", "3", "--first-seed", "0", "--json"], capsys)
    assert code == 1
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["failed_seeds"][0] == 0
    assert summary["violations"] >= len(summary["failed_seeds"])
    replay_lines = [line for line in out.splitlines() if "replay: somnet sim" in line]
    assert len(replay_lines) == len(summary["failed_seeds"])
    replay = replay_lines[0].split("replay: somnet ")[1].split()
    assert replay[:7] == ["sim", "--validators", "4", "--seeds", "1", "--first-seed", "0"]
    code, out, _ = run_cli(replay, capsys)
    assert code == 1
    assert out.startswith("FAIL seed=0: agreement:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--byzantine", "2"], "--allow-unsafe"),
        (["--faults", "delay,flood"], "unknown fault kinds flood"),
        (["--validators", "0"], "validators must be"),
        (["--seeds", "0"], "--seeds must be"),
        (["--byzantine", "4"], "less than validators"),
    ],
)
def test_bad_arguments_exit_two_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["sim", *argv], capsys)
    assert code == 2
    assert message in err
    assert out == ""


def test_installed_entry_point_runs_as_a_process() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "cli.main", "sim", "--seeds", "2", "--heights", "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(last) >= {"seeds", "violations", "failed_seeds", "decided_heights", "wall_seconds"}
    assert completed.returncode == (0 if last["violations"] == 0 else 1)


def test_change_validators_at_runs_and_replays(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "--validators", "4", "--byzantine", "1", "--heights", "6", "--seeds", "2"]
    code, out, _ = run_cli([*argv, "--change-validators-at", "2", "--json"], capsys)
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["decided_heights"] == 12
    params = SimParams(
        validators=4, heights=6, byzantine=1, spares=1, validator_changes=rotation_changes(4, 2)
    )
    assert replay_command(params, 3).endswith("--change-validators-at 2")
    code, _, err = run_cli([*argv, "--change-validators-at", "0"], capsys)
    assert code == 2
    assert "--change-validators-at must be >= 1" in err


def test_jobs_print_what_one_process_prints(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "--validators", "4", "--byzantine", "2", "--allow-unsafe", "--faults", "none"]
    argv += ["--seeds", "6", "--heights", "3", "--signatures", "keyed-hash", "--json"]
    outputs = []
    for jobs in ("1", "2"):
        code, out, _ = run_cli([*argv, "--jobs", jobs], capsys)
        assert code == 1
        *lines, last = out.strip().splitlines()
        summary = json.loads(last)
        for measured in ("wall_seconds", "cpu_seconds", "heights_per_cpu_second"):
            del summary[measured]
        outputs.append((lines[:-1], summary))  # the last text line has wall and CPU
    assert outputs[0] == outputs[1]
    assert any(line.startswith("FAIL seed=") for line in outputs[0][0])
    code, _, err = run_cli(["sim", "--jobs", "0"], capsys)
    assert code == 2
    assert "--jobs must be 1..64" in err
