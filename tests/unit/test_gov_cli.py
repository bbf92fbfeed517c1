"""`somnet gov` without a network: the action file's round trip and its checks (an edited
file is never signed or sent), officer approvals (one each, genesis officers only), the
threshold check before anything is sent, and a file approved by two officers making a
govern transaction the ledger applies."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from cli.gov import (
    ActionFile,
    ActionFileError,
    add_approval,
    approvals_counted,
    decode_action_file,
    encode_action_file,
    readable,
)
from cli.main import main
from node.errors import RefusalCode
from node.governance import (
    Action,
    Admit,
    Freeze,
    Reinstate,
    RotateKey,
    SetValidators,
    Suspend,
    Unfreeze,
    new_key_signed,
    rotate_key,
)
from node.keys import write_key_file
from node.ledger import Ledger, decode_tx_result
from node.tx import sign_govern
from tests.unit.ledger_support import (
    CHAIN_ID,
    ISSUER,
    OFFICERS,
    Chain,
    admit_action,
    genesis_doc,
    key_of,
    make_genesis,
)

EXPIRY = 100
UETR = uuid.UUID("0b7f9a52-4c1e-4d0a-9f3e-2b6d8c1a5e70").bytes

ACTIONS: list[Action] = [
    admit_action("bank-g"),
    admit_action("val-g", role="validator"),
    Suspend(participant_id="bank-f"),
    Reinstate(participant_id="bank-f"),
    Freeze(account="bank-e.payroll"),
    Unfreeze(account="bank-e.payroll"),
    rotate_key("bank-e", key_of("bank-e-2"), chain_id=CHAIN_ID, uetr=UETR, expiry_height=EXPIRY),
    SetValidators(validators=(("nbkr", 2), ("val-b", 1), ("val-c", 1)), allow_below_four=True),
]


def unsigned(action: Action) -> ActionFile:
    return ActionFile(
        chain_id=CHAIN_ID, uetr=UETR, expiry_height=EXPIRY, action=action, approvals=()
    )


def signed_by(action_file: ActionFile, *officers: str) -> ActionFile:
    for officer in officers:
        action_file = add_approval(action_file, officer, key_of(officer))
    return action_file


def document_of(action_file: ActionFile) -> dict[str, Any]:
    document = json.loads(encode_action_file(action_file))
    assert isinstance(document, dict)
    return document


def edited(action_file: ActionFile, **changes: object) -> str:
    return json.dumps(document_of(action_file) | changes)


# -- the action file -------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_every_action_round_trips_with_its_approvals(action: Action) -> None:
    action_file = signed_by(unsigned(action), "officer-2", "officer-1")
    decoded = decode_action_file(encode_action_file(action_file))
    assert decoded == action_file
    assert [a.officer_id for a in decoded.approvals] == ["officer-1", "officer-2"]
    document = document_of(action_file)
    assert document["version"] == 1
    assert document["uetr"] == str(uuid.UUID(bytes=UETR))
    assert document["action"] == readable(action)
    assert document["action"]["action"] == ACTION_NAMES[type(action)]


ACTION_NAMES = {Admit: "admit", Suspend: "suspend", Reinstate: "reinstate", Freeze: "freeze",
                Unfreeze: "unfreeze", RotateKey: "rotate_key",
                SetValidators: "set_validators"}  # fmt: skip


def test_a_rotation_file_shows_the_new_key_and_its_signature() -> None:
    action = ACTIONS[6]
    assert type(action) is RotateKey
    fields = document_of(unsigned(action))["action"]
    assert fields["new_public_key"] == bytes(key_of("bank-e-2").verify_key).hex()
    assert fields["new_key_signature"] == action.new_key_signature.hex()
    assert new_key_signed(action, unsigned(action).message)


def test_readable_fields_that_differ_from_the_encoding_are_refused() -> None:
    action_file = unsigned(Freeze(account="bank-e"))
    text = edited(action_file, action={"action": "freeze", "account": "bank-f"})
    with pytest.raises(ActionFileError, match="readable fields do not match"):
        decode_action_file(text)


def test_an_encoding_edited_to_another_action_is_refused() -> None:
    other = document_of(unsigned(Freeze(account="bank-f")))["encoded"]
    text = edited(unsigned(Freeze(account="bank-e")), encoded=other)
    with pytest.raises(ActionFileError, match="readable fields do not match"):
        decode_action_file(text)


def test_a_non_canonical_or_broken_encoding_is_refused() -> None:
    action_file = unsigned(Freeze(account="bank-e"))
    # The same array with a 16-bit array header: decodes to the same action, other bytes.
    long_header = "dc0002" + document_of(action_file)["encoded"][2:]
    with pytest.raises(ActionFileError, match="canonical"):
        decode_action_file(edited(action_file, encoded=long_header))
    for broken in ["", "zz", "c1", "92a6667265657a65"]:
        with pytest.raises(ActionFileError, match="encoded"):
            decode_action_file(edited(action_file, encoded=broken))


def test_an_approval_no_longer_verifies_once_the_transaction_fields_change() -> None:
    action_file = signed_by(unsigned(Suspend(participant_id="bank-f")), "officer-1")
    for change in [
        {"expiry_height": EXPIRY + 1},
        {"uetr": str(uuid.uuid4())},
        {"chain_id": "som-other"},
    ]:
        with pytest.raises(ActionFileError, match="officer-1 does not verify"):
            decode_action_file(edited(action_file, **change))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"version": 2}, "version"),
        ({"version": True}, "version"),
        ({"chain_id": 7}, "chain_id"),
        ({"uetr": "not-a-uuid"}, "uetr"),
        ({"expiry_height": 0}, "expiry_height"),
        ({"expiry_height": "100"}, "expiry_height"),
        ({"approvals": {}}, "approvals"),
        (
            {"approvals": [{"officer": "officer-1", "public_key": "00", "signature": "00"}]},
            "public_key",
        ),
    ],
)
def test_malformed_fields_are_refused(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ActionFileError, match=problem):
        decode_action_file(edited(unsigned(Freeze(account="bank-e")), **changes))


def test_approvals_out_of_order_or_repeated_are_refused() -> None:
    action_file = signed_by(unsigned(Freeze(account="bank-e")), "officer-1", "officer-2")
    approvals = document_of(action_file)["approvals"]
    with pytest.raises(ActionFileError, match="ascending"):
        decode_action_file(edited(action_file, approvals=approvals[::-1]))
    same_key = [approvals[0], {**approvals[0], "officer": "officer-9"}]
    with pytest.raises(ActionFileError, match="already approved"):
        decode_action_file(edited(action_file, approvals=same_key))


# -- approvals ---------------------------------------------------------------------------


def test_an_officer_approves_once_under_any_id() -> None:
    action_file = signed_by(unsigned(Freeze(account="bank-e")), "officer-1")
    with pytest.raises(ActionFileError, match="officer-1 approved this action already"):
        add_approval(action_file, "officer-1", key_of("officer-1"))
    with pytest.raises(ActionFileError, match="officer-1 approved this action already"):
        add_approval(action_file, "officer-3", key_of("officer-1"))  # the same key renamed
    with pytest.raises(ActionFileError, match="officer-1 approved this action already"):
        add_approval(action_file, "officer-1", key_of("officer-2"))  # the same id


def test_only_genesis_officers_with_their_own_keys_count() -> None:
    genesis = make_genesis()
    action_file = unsigned(Freeze(account="bank-e"))
    action_file = add_approval(action_file, "officer-1", key_of("officer-1"))
    action_file = add_approval(action_file, "officer-2", key_of("not-officer-2"))
    action_file = add_approval(action_file, "officer-x", key_of("officer-x"))
    counted, ignored = approvals_counted(action_file, genesis)
    assert counted == ["officer-1"]
    assert ignored == [
        "officer-2 signed with a key genesis does not name",
        "officer-x is not a genesis officer",
    ]


def test_a_file_approved_by_the_threshold_makes_a_govern_tx_the_ledger_applies() -> None:
    chain = Chain(Ledger(make_genesis([("bank-e", 500)])))
    text = encode_action_file(signed_by(unsigned(Freeze(account="bank-e")), *OFFICERS[:2]))
    action_file = decode_action_file(text)
    tx = sign_govern(
        key_of(ISSUER),
        action_file.chain_id,
        signer=ISSUER,
        uetr=action_file.uetr,
        expiry_height=action_file.expiry_height,
        action=action_file.action,
        approvals=[(a.officer_id, a.signature) for a in action_file.approvals],
    )
    [(_, result)] = chain.settle([tx]).tx_results
    assert decode_tx_result(result).code is None
    assert chain.ledger.frozen == {"bank-e"}


def test_one_approval_short_the_ledger_refuses_it() -> None:
    chain = Chain(Ledger(make_genesis()))
    action_file = signed_by(unsigned(Suspend(participant_id="bank-f")), "officer-3")
    tx = sign_govern(
        key_of(ISSUER),
        CHAIN_ID,
        signer=ISSUER,
        uetr=action_file.uetr,
        expiry_height=EXPIRY,
        action=action_file.action,
        approvals=[(a.officer_id, a.signature) for a in action_file.approvals],
    )
    [(_, result)] = chain.settle([tx]).tx_results
    assert decode_tx_result(result).code is RefusalCode.GOV_NOT_APPROVED


# -- the commands, offline ---------------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """A genesis file, the officers' key files, and a node directory of the issuer whose
    API nobody answers (anything sent would fail UNREACHABLE, exit 1)."""
    (tmp_path / "genesis.json").write_text(json.dumps(genesis_doc()))
    for name in (*OFFICERS, "stranger", "bank-e-2"):
        write_key_file(tmp_path / f"{name}.json", key_of(name))
    home = tmp_path / "nbkr"
    home.mkdir()
    write_key_file(home / "node_key.json", key_of(ISSUER))
    (home / "genesis.json").write_text(json.dumps(genesis_doc()))
    (home / "node.toml").write_text(
        '[node]\nid = "nbkr"\n\n[p2p]\nlisten = "127.0.0.1:9"\n\n[api]\nlisten = "127.0.0.1:9"\n'
    )
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["gov", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def prepare(setup: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Path:
    out = setup / "action.json"
    offline = ("--genesis", setup / "genesis.json", "--expiry-height", str(EXPIRY))
    code, _, err = run(capsys, *args, *offline, "--out", out)
    assert (code, err) == (0, "")
    return out


def test_prepare_sign_twice_and_the_threshold_is_reached(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "freeze", "--account", "bank-e.payroll")
    for officer in OFFICERS[:2]:
        code, stdout, err = run(capsys, "sign", out, "--officer-key", setup / f"{officer}.json",
                                "--genesis", setup / "genesis.json")  # fmt: skip
        assert (code, err) == (0, "")
    assert "officer-1, officer-2 (2 of 2 needed)" in stdout
    action_file = decode_action_file(out.read_text())
    assert action_file.action == Freeze(account="bank-e.payroll")
    assert (action_file.chain_id, action_file.expiry_height) == (CHAIN_ID, EXPIRY)
    assert approvals_counted(action_file, make_genesis())[0] == ["officer-1", "officer-2"]


def test_a_second_signature_of_the_same_officer_is_refused(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "suspend", "--id", "bank-f")
    assert run(capsys, "sign", out, "--officer-key", setup / "officer-1.json")[0] == 0
    before = out.read_text()
    code, _, err = run(capsys, "sign", out, "--officer-key", setup / "officer-1.json")
    assert code == 2
    assert err == "somnet gov: ALREADY_SIGNED: officer-1 approved this action already\n"
    assert out.read_text() == before


def test_a_key_that_is_not_a_genesis_officer_is_refused(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "suspend", "--id", "bank-f")
    before = out.read_text()
    code, _, err = run(capsys, "sign", out, "--officer-key", setup / "stranger.json",
                       "--genesis", setup / "genesis.json")  # fmt: skip
    assert code == 2
    assert err.startswith("somnet gov: NOT_AN_OFFICER: ")
    code, _, err = run(capsys, "sign", out, "--officer-key", setup / "officer-1.json",
                       "--officer", "officer-2", "--genesis", setup / "genesis.json")  # fmt: skip
    assert code == 2
    assert "is officer-1's key, not officer-2's" in err
    assert out.read_text() == before


def test_submit_short_of_the_threshold_sends_nothing(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "reinstate", "--id", "bank-f")
    run(capsys, "sign", out, "--officer-key", setup / "officer-1.json")
    run(capsys, "sign", out, "--officer-key", setup / "stranger.json")  # counts for nothing
    code, stdout, err = run(capsys, "submit", out, "--home", setup / "nbkr")
    assert (code, stdout) == (2, "")
    assert err == (
        "somnet gov: GOV_NOT_APPROVED: 1 of the 2 officer approvals needed"
        " (stranger is not a genesis officer): 1 more needed; nothing was sent\n"
    )
    # Approved: now it is sent, and with nobody answering that fails to reach the node.
    run(capsys, "sign", out, "--officer-key", setup / "officer-3.json")
    code, _, err = run(capsys, "submit", out, "--home", setup / "nbkr")
    assert code == 1
    assert err.startswith("somnet gov: UNREACHABLE: ")


def test_an_edited_file_is_neither_signed_nor_sent(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "freeze", "--account", "bank-e")
    out.write_text(out.read_text().replace('"bank-e"', '"bank-f"'))
    for args in (("sign", out, "--officer-key", setup / "officer-1.json"),
                 ("submit", out, "--home", setup / "nbkr")):  # fmt: skip
        code, _, err = run(capsys, *args)
        assert code == 2
        assert "INVALID_ACTION_FILE" in err and "readable fields do not match" in err


def test_rotate_key_carries_the_new_keys_signature(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "rotate-key", "--id", "bank-e", "--new-key",
                  str(setup / "bank-e-2.json"))  # fmt: skip
    action_file = decode_action_file(out.read_text())
    action = action_file.action
    assert type(action) is RotateKey
    assert action.new_public_key == bytes(key_of("bank-e-2").verify_key)
    assert new_key_signed(action, action_file.message)


def test_set_validators_sorts_and_checks_its_entries(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "set-validators", "--validator", "val-c=1", "--validator",
                  "nbkr=3", "--validator", "val-b=2", "--allow-below-four")  # fmt: skip
    assert decode_action_file(out.read_text()).action == SetValidators(
        validators=(("nbkr", 3), ("val-b", 2), ("val-c", 1)), allow_below_four=True
    )
    offline = ("--genesis", setup / "genesis.json", "--expiry-height", "9", "--out", setup / "x")
    for entries, message in [
        (["nbkr"], "expected id=voting_power"),
        (["nbkr=-1"], "expected id=voting_power"),
        (["nbkr=1", "nbkr=2"], "named twice"),
        (["nbkr=0"], "voting power must be"),
    ]:
        flags = [flag for entry in entries for flag in ("--validator", entry)]
        code, _, err = run(capsys, "set-validators", *flags, *offline)
        assert code == 2
        assert message in err
    assert not (setup / "x").exists()


def test_prepare_refuses_bad_fields_and_an_existing_file(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = prepare(setup, capsys, "freeze", "--account", "bank-e")
    before = out.read_text()
    offline = ("--genesis", setup / "genesis.json", "--expiry-height", str(EXPIRY))
    code, _, err = run(capsys, "unfreeze", "--account", "bank-e", *offline, "--out", out)
    assert (code, out.read_text() == before) == (2, True)
    assert err.startswith("somnet gov: FILE_EXISTS: ")
    other = setup / "other.json"
    admit = ["admit", "--id", "bank-g", "--name", "G", "--role", "bank",
             "--peer-address", "127.0.0.1:7000", "--api-address", "127.0.0.1:8000"]  # fmt: skip
    for public_key, code_name in [("ab" * 31, "INVALID_INPUT"), ("00" * 32, "MALFORMED")]:
        code, _, err = run(capsys, *admit, "--public-key", public_key, *offline, "--out", other)
        assert code == 2
        assert err.startswith(f"somnet gov: {code_name}: ")
    code, _, err = run(capsys, "suspend", "--id", "bank e", *offline, "--out", other)
    assert code == 2
    code, _, err = run(capsys, "suspend", "--id", "bank-e", "--out", other)
    assert (code, err) == (2, "somnet gov: INVALID_INPUT: give --home DIR, or --genesis FILE"
                                " with --expiry-height H\n")  # fmt: skip
    assert not other.exists()
