"""The load tools refuse numbers they cannot honour before anything starts: NaN, inf, zero
clients, a negative drain, more legs per payout than a payout holds (exit 2, naming the
option)."""

from __future__ import annotations

import pytest

from cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        ["load", "--clients", "0"],
        ["load", "--rate", "nan"],
        ["load", "--rate", "inf"],
        ["load", "--duration", "0"],
        ["load", "--drain", "-1"],
        ["bench", "network", "--warmup", "nan"],
        ["bench", "network", "--rate", "1e300"],
        ["bench", "network", "--clients", "-3"],
        ["bench", "network", "--base-port", "70000"],
        ["bench", "network", "--validators", "101"],
        ["bench", "network", "--accounts", "-1"],
        ["bench", "payout", "--legs-per-tx", "1001"],
        ["bench", "payout", "--legs", "0"],
        ["bench", "payout", "--legs", "1.5"],
        ["bench", "catchup", "--transfers", "0"],
        ["bench", "catchup", "--rate", "nan"],
        ["bench", "catchup", "--rate", "-1"],
        ["bench", "catchup", "--validators", "0"],
        ["bench", "catchup", "--timeout", "inf"],
        ["bench", "network", "--down", "-1"],
    ],
)
def test_a_number_out_of_range_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    option = next(a for a in argv if a.startswith("--"))
    assert f"argument {option}" in capsys.readouterr().err
