"""`somnet sim --scale` and many validators: the cost table's counts grow with the set
(never a speed asserted), and `somnet sim --validators 100` runs."""

from __future__ import annotations

import itertools
import json

import pytest

from cli.main import main
from cli.sim import scale_row
from consensus.sim import SimParams


def test_cost_per_height_grows_with_the_validator_set() -> None:
    counts = (4, 7, 16)
    rows = [
        scale_row(
            1, SimParams(validators=n, heights=3, faults=frozenset(), signatures="keyed-hash")
        )
        for n in counts
    ]
    assert [row.violations for row in rows] == [(), (), ()]
    assert [row.heights for row in rows] == [3, 3, 3]
    for smaller, larger in itertools.pairwise(rows):
        assert larger.messages_sent_per_height > smaller.messages_sent_per_height
        assert larger.messages_delivered_per_height > smaller.messages_delivered_per_height
        assert larger.signature_checks_per_height > smaller.signature_checks_per_height
        assert larger.signatures_made_per_height > smaller.signatures_made_per_height
    for row in rows:
        # Every validator prevotes and precommits once per height; every one of them
        # checks the others' votes: linear and quadratic in n.
        assert row.signatures_made_per_height >= 2 * row.validators
        assert row.signature_checks_per_height >= row.validators * (row.validators - 1)
        assert row.messages_delivered_per_height <= row.messages_sent_per_height
    # Quadratic, not linear: 4x the validators, well over 4x the checks.
    assert rows[2].signature_checks_per_height > 8 * rows[0].signature_checks_per_height


def test_counts_do_not_depend_on_the_signature_scheme() -> None:
    params = SimParams(validators=7, heights=2, faults=frozenset())
    ed25519 = scale_row(3, params)
    keyed = scale_row(
        3, SimParams(validators=7, heights=2, faults=frozenset(), signatures="keyed-hash")
    )
    assert ed25519.signature_checks_per_height == keyed.signature_checks_per_height
    assert ed25519.messages_sent_per_height == keyed.messages_sent_per_height


def test_scale_prints_a_row_per_count_and_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["sim", "--scale", "4,7", "--heights", "2", "--signatures", "keyed-hash", "--json"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[1].startswith("validators | msgs sent")
    summary = json.loads(lines[-1])
    assert summary["signatures"] == "keyed-hash"
    assert [row["validators"] for row in summary["rows"]] == [4, 7]
    assert all(row["heights"] == 2 and row["violations"] == [] for row in summary["rows"])
    assert (
        summary["rows"][1]["signature_checks_per_height"]
        > summary["rows"][0]["signature_checks_per_height"]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scale", "4,x"], "comma list of validator counts"),
        (["--scale", "4,4"], "distinct validator counts"),
        (["--scale", "0,4"], "validator counts must be 1..100"),
        (["--scale", "4,101"], "validator counts must be 1..100"),
        (["--scale", "4", "--byzantine", "1"], "fault-free honest sets"),
    ],
)
def test_bad_scale_arguments_exit_two(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sim", *argv])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.out == ""


def test_one_hundred_validators_run(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--validators", "100", "--seeds", "1", "--heights", "1", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["validators"] == 100
    assert summary["decided_heights"] == 1
    assert summary["signature_checks"] >= 100 * 99  # every validator checked the others


def test_more_than_one_hundred_validators_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sim", "--validators", "101", "--seeds", "1"]) == 2
    assert "validators must be 1..100" in capsys.readouterr().err
