"""Genesis parsing and validation: every rule gives an error that names its field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from node.errors import GenesisError
from node.genesis import load_genesis, parse_genesis
from tests.unit.ledger_support import BANKS, CHAIN_ID, VALIDATORS, genesis_doc, public_hex

P = 2**255 - 19
SMALL_ORDER_KEYS = [
    "01" + "00" * 31,  # the identity
    "00" * 32,  # order 4
    "ec" + "ff" * 30 + "7f",  # y = -1, order 2
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
]
NON_CANONICAL_KEYS = [
    (P + 1).to_bytes(32, "little").hex(),  # y = p + 1, which would reduce to 1
    (P + 4).to_bytes(32, "little").hex(),
    (1 | 1 << 255).to_bytes(32, "little").hex(),  # x = 0 with the sign bit set
]


def doc() -> dict[str, Any]:
    return copy.deepcopy(genesis_doc([("bank-e", 1_000), ("bank-e.payroll", 5)]))


def error_of(document: dict[str, Any] | str) -> str:
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(GenesisError) as info:
        parse_genesis(text)
    return str(info.value)


def test_valid_genesis() -> None:
    genesis = parse_genesis(json.dumps(doc()))
    assert genesis.chain_id == CHAIN_ID
    assert genesis.issuer.participant_id == "nbkr"
    ids = [p.participant_id for p in genesis.participants]
    assert ids == sorted([*VALIDATORS, *BANKS])
    accounts = {a.account_id: a.owner for a in genesis.accounts}
    assert accounts["bank-e"] == "bank-e"  # every participant's main account is implicit
    assert accounts["bank-e.payroll"] == "bank-e"
    assert genesis.issuance == (("bank-e", 1_000), ("bank-e.payroll", 5))
    vset = genesis.validator_set()
    assert [v.validator_id for v in vset.validators] == sorted(VALIDATORS)
    assert vset.total_power == 4
    assert genesis.hash() == parse_genesis(json.dumps(doc())).hash()


def test_load_genesis_from_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(doc()))
    assert load_genesis(path).chain_id == CHAIN_ID
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "missing.json")


def test_missing_issuer() -> None:
    d = doc()
    d["participants"][0]["role"] = "validator"
    assert "exactly one issuer, found 0" in error_of(d)


def test_two_issuers() -> None:
    d = doc()
    d["participants"][1]["role"] = "issuer"
    assert "exactly one issuer, found 2" in error_of(d)


def test_duplicate_participant_id() -> None:
    d = doc()
    d["participants"][2]["id"] = "val-b"
    assert "duplicate id 'val-b'" in error_of(d)


def test_duplicate_account_id() -> None:
    d = doc()
    d["accounts"].append({"id": "bank-e.payroll", "owner": "bank-e"})
    assert "duplicate id 'bank-e.payroll'" in error_of(d)


def test_duplicate_json_key() -> None:
    assert "duplicate key 'chain_id'" in error_of('{"chain_id": "a", "chain_id": "b"}')


def test_reused_public_key() -> None:
    d = doc()
    d["participants"][5]["public_key"] = d["participants"][4]["public_key"]
    assert "reuses a public key" in error_of(d)


@pytest.mark.parametrize("key", ["zz" * 32, "ab" * 31, "", 7])
def test_bad_key_format(key: object) -> None:
    d = doc()
    d["participants"][3]["public_key"] = key
    assert "participant 'val-d'.public_key: expected 64 hex digits" in error_of(d)


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS + NON_CANONICAL_KEYS)
def test_small_order_and_non_canonical_keys(key: str) -> None:
    d = doc()
    d["participants"][4]["public_key"] = key
    message = error_of(d)
    assert "participant 'bank-e'.public_key: not a valid Ed25519 public key" in message


def test_a_genuine_key_is_accepted() -> None:
    d = doc()
    d["participants"][4]["public_key"] = public_hex("someone-else")
    assert parse_genesis(json.dumps(d)).participants


@pytest.mark.parametrize("amount", ["1.5", "100.0", "1e3", "true", '"100"', "-1", "0", "NaN"])
def test_issuance_amount_must_be_an_integer(amount: str) -> None:
    d = doc()
    d["issuance"][0]["amount"] = "AMOUNT"
    text = json.dumps(d).replace('"AMOUNT"', amount)
    message = error_of(text)
    assert "issuance[0].amount" in message or "NaN" in message


def test_float_amount_message_says_integer_tyiyn() -> None:
    d = doc()
    d["issuance"][0]["amount"] = "AMOUNT"
    message = error_of(json.dumps(d).replace('"AMOUNT"', "12.5"))
    assert "issuance[0].amount: expected an integer" in message
    assert "12.5 (not an integer; amounts are integer tyiyn)" in message


def test_issuance_total_is_bounded() -> None:
    d = doc()
    d["issuance"] = [{"account": "bank-e", "amount": 2**62}, {"account": "bank-f", "amount": 2**62}]
    assert "issuance: total exceeds" in error_of(d)


def test_issuance_to_unknown_account() -> None:
    d = doc()
    d["issuance"][0]["account"] = "nobody"
    assert "issuance[0].account: unknown account 'nobody'" in error_of(d)


def test_account_with_unknown_owner() -> None:
    d = doc()
    d["accounts"][0]["owner"] = "ghost"
    assert "account 'bank-e.payroll'.owner: unknown participant 'ghost'" in error_of(d)


def test_main_account_cannot_belong_to_another() -> None:
    d = doc()
    d["accounts"].append({"id": "bank-f", "owner": "bank-e"})
    assert "account 'bank-f': is the main account of 'bank-f'" in error_of(d)


def test_validator_needs_voting_power_and_bank_has_none() -> None:
    d = doc()
    del d["participants"][1]["voting_power"]
    assert "participant 'val-b'.voting_power: expected an integer in [1," in error_of(d)
    d = doc()
    d["participants"][4]["voting_power"] = 3
    assert "participant 'bank-e'.voting_power: expected an integer in [0, 0]" in error_of(d)
    d = doc()
    d["participants"][1]["voting_power"] = True
    assert "participant 'val-b'.voting_power" in error_of(d)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("role", "king", "participant 'val-b'.role: expected one of issuer, validator, bank"),
        ("peer_address", "localhost", "participant 'val-b'.peer_address: expected host:port"),
        ("api_address", "h:70000", "participant 'val-b'.api_address: expected host:port"),
        ("name", "", "participant 'val-b'.name"),
        ("id", "bad id", "participants[1].id: expected an id"),
        ("colour", "red", "participants[1]: unknown field 'colour'"),
    ],
)
def test_participant_fields(field: str, value: object, expected: str) -> None:
    d = doc()
    d["participants"][1][field] = value
    assert expected in error_of(d)


def test_document_level_errors() -> None:
    assert "not valid JSON" in error_of("{")
    assert "genesis: expected an object" in error_of("[]")
    d = doc()
    d["chain_id"] = ""
    assert "chain_id: expected an id" in error_of(d)
    d = doc()
    d["participants"] = []
    assert "participants: expected a list of 1.." in error_of(d)


# Ids appear in API paths (GET /v1/accounts/{id}), so they use only characters that need
# no escaping in a URL path (RFC 3986 unreserved) and start with a letter or a digit.
NOT_IDS = ["bank-e/payroll", "bank e", ".", "..", "-bank", "~bank", "_bank", "bank-é",
           "bank:e", "bank%2Fe", "bank?e", "bank#e", "x" * 65, ""]  # fmt: skip
IDS = ["b", "bank-e.pay_roll~2", "A.B-C_D~E", "0", "a..b", "x" * 64]


@pytest.mark.parametrize("account_id", NOT_IDS)
def test_an_account_id_that_needs_escaping_in_a_url_is_refused(account_id: str) -> None:
    d = doc()
    d["accounts"].append({"id": account_id, "owner": "bank-e"})
    message = error_of(d)
    assert "accounts[2].id: expected an id of 1..64 characters" in message
    assert "A-Z a-z 0-9 - . _ ~" in message


@pytest.mark.parametrize("participant_id", NOT_IDS)
def test_a_participant_id_that_needs_escaping_in_a_url_is_refused(participant_id: str) -> None:
    d = doc()
    d["participants"][5]["id"] = participant_id
    assert "participants[5].id: expected an id of 1..64 characters" in error_of(d)


@pytest.mark.parametrize("account_id", IDS)
def test_unreserved_url_characters_make_an_id(account_id: str) -> None:
    d = doc()
    d["accounts"].append({"id": account_id, "owner": "bank-e"})
    d["issuance"].append({"account": account_id, "amount": 7})
    genesis = parse_genesis(json.dumps(d))
    assert ("bank-e", account_id) in {(a.owner, a.account_id) for a in genesis.accounts}
