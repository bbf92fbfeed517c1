"""The genesis file: the chain id, the participants and their keys, accounts, issuance.

Format: JSON, not TOML. Genesis is one machine-written document that every node must read
bit-identically and whose hash names the network, so we want the strictest parser in the
standard library: JSON has one number syntax, we reject floats, NaN, Infinity and duplicate
keys outright, and there are no dates or implicit tables. (Operator settings, which people
edit by hand, are TOML in node/config.py.)

    {
      "chain_id": "som-pilot-1",
      "participants": [
        {"id": "nbkr", "name": "National Bank", "role": "issuer",
         "public_key": "<64 hex>", "voting_power": 1,
         "peer_address": "10.0.0.1:7000", "api_address": "10.0.0.1:8000"}, ...],
      "accounts": [{"id": "bank-a.payroll", "owner": "bank-a"}, ...],
      "issuance": [{"account": "bank-a", "amount": 100000000}],
      "officers": [{"id": "officer-1", "public_key": "<64 hex>"}, ...],
      "officer_threshold": 2
    }

Rules: every id (the chain's, the participants', the accounts') is 1..64 characters of
A-Z a-z 0-9 - . _ ~, the first a letter or digit (node/ids.py): the characters that need
no escaping in a URL, because an account id is a path segment of the API
(GET /v1/accounts/bank-a.payroll). Exactly one issuer; validators are the issuer and the
participants with role "validator", each with voting power >= 1 (banks have none); every
participant owns a main account whose id is the participant id (implicit; it may also be
listed); a bank may own more accounts; amounts are integer tyiyn. Public keys must be
canonical Ed25519 points of large order (libsodium crypto_core_ed25519_is_valid_point).

Officers (issue 13): the central bank's officers, whose keys approve governance actions
(node/governance.py), `officer_threshold` of them per action (four-eyes control: for
example 2 of 3). Officer keys are not node keys: their ids are distinct from every
participant id and their keys from every participant key and from each other. Both
fields are required: 1..OFFICERS_MAX officers, 1 <= threshold <= officers.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from nacl.bindings import crypto_core_ed25519_is_valid_point

from consensus.config import Validator, ValidatorSet
from consensus.errors import ConfigError
from consensus.messages import ValidatorId
from node.errors import GenesisError, RefusalCode, TxRefused
from node.governance import NAME_CHARS_MAX, OFFICERS_MAX, VOTING_POWER_MAX
from node.ids import ID_RULE, is_id
from node.tx import AMOUNT_MAX, remittance_recipients

__all__ = [
    "Account",
    "Genesis",
    "Officer",
    "Participant",
    "Role",
    "load_genesis",
    "parse_genesis",
]

PARTICIPANTS_MAX = 1000
ACCOUNTS_MAX = 2_000_000
GENESIS_SIZE_MAX = 256 * 1024 * 1024
ROLES = ("issuer", "validator", "bank")
Role = str  # one of ROLES
TAG_GENESIS = b"somnet/genesis/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    participant_id: str
    name: str
    role: Role
    public_key: bytes
    voting_power: int  # 0 for banks that do not validate
    peer_address: str  # host:port
    api_address: str  # host:port


@dataclass(frozen=True, slots=True, kw_only=True)
class Officer:
    """A central bank officer: approves governance actions with this key."""

    officer_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    account_id: str
    owner: str  # participant id


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    chain_id: str
    participants: tuple[Participant, ...]  # sorted by id
    accounts: tuple[Account, ...]  # sorted by id; includes every main account
    issuance: tuple[tuple[str, int], ...]  # (account id, amount), in file order
    officers: tuple[Officer, ...]  # sorted by id
    officer_threshold: int  # distinct officer approvals a governance action needs

    @property
    def issuer(self) -> Participant:
        issuers = [p for p in self.participants if p.role == "issuer"]
        assert len(issuers) == 1
        return issuers[0]

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(
            tuple(
                Validator(
                    validator_id=ValidatorId(p.participant_id),
                    public_key=p.public_key,
                    voting_power=p.voting_power,
                )
                for p in self.participants
                if p.voting_power > 0
            )
        )

    def owner_of(self, account_id: str) -> str | None:
        """The participant owning the account, or None; O(log accounts)."""
        accounts = self.accounts
        index = bisect.bisect_left(accounts, account_id, key=lambda a: a.account_id)
        if index < len(accounts) and accounts[index].account_id == account_id:
            return accounts[index].owner
        return None

    def remittance_keys(self, signer: str, credited_accounts: Iterable[str]) -> dict[str, bytes]:
        """The genesis Ed25519 public keys, by participant id, that a remittance of
        `signer` paying these accounts is sealed to (node.tx.remittance_recipients): right
        while no key was rotated and no bank admitted (load tools, tests). A bank's
        commands seal to the keys in force now (cli/submit.py remittance_keys).

        Raises:
            TxRefused: UNKNOWN_ACCOUNT, naming an account or the signer not in genesis.
        """
        keys = {p.participant_id: p.public_key for p in self.participants}
        banks = []
        for account in credited_accounts:
            owner = self.owner_of(account)
            if owner is None:
                raise TxRefused(RefusalCode.UNKNOWN_ACCOUNT, f"no account {account!r}")
            banks.append(owner)
        if signer not in keys:
            raise TxRefused(RefusalCode.UNKNOWN_ACCOUNT, f"no participant {signer!r}")
        recipients = remittance_recipients(signer, self.issuer.participant_id, banks)
        return {recipient: keys[recipient] for recipient in recipients}

    def encode(self) -> bytes:
        packed = msgpack.packb(
            [
                TAG_GENESIS,
                self.chain_id,
                [_participant_fields(p) for p in self.participants],
                [[a.account_id, a.owner] for a in self.accounts],
                [list(item) for item in self.issuance],
                [[o.officer_id, o.public_key] for o in self.officers],
                self.officer_threshold,
            ],
            use_bin_type=True,
        )
        assert isinstance(packed, bytes)
        return packed

    def hash(self) -> bytes:
        """Names the network's starting point; the app hash chain starts from it."""
        return hashlib.sha256(self.encode()).digest()


def _participant_fields(p: Participant) -> list[object]:
    head: list[object] = [p.participant_id, p.name, p.role, p.public_key, p.voting_power]
    return [*head, p.peer_address, p.api_address]


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file. Raises GenesisError naming the bad field."""
    try:
        size = path.stat().st_size
        if size > GENESIS_SIZE_MAX:
            raise GenesisError(f"{path}: larger than {GENESIS_SIZE_MAX} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GenesisError(f"{path}: cannot read: {exc}") from exc
    return parse_genesis(text)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise GenesisError(f"duplicate key {key!r}")
        result[key] = value
    return result


class _FloatLiteral:
    """A JSON number with a fraction or exponent, kept so the field check can name it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"{self.text} (not an integer; amounts are integer tyiyn)"


def _reject_constant(text: str) -> float:
    raise GenesisError(f"{text} is not a valid number")


def parse_genesis(text: str) -> Genesis:
    """Parse and validate genesis JSON text. Raises GenesisError naming the bad field."""
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_float=_FloatLiteral,
            parse_constant=_reject_constant,
        )
    except (json.JSONDecodeError, RecursionError) as exc:
        raise GenesisError(f"not valid JSON: {exc}") from exc
    fields = {"chain_id", "participants", "accounts", "issuance", "officers", "officer_threshold"}
    obj = _object(doc, "genesis", fields)
    chain_id = _id(obj.get("chain_id"), "chain_id")
    participants = _participants(obj.get("participants"))
    accounts = _accounts(obj.get("accounts", []), participants)
    issuance = _issuance(obj.get("issuance", []), accounts)
    officers = _officers(obj.get("officers"), participants)
    threshold = _int(obj.get("officer_threshold"), "officer_threshold", 1, len(officers))
    genesis = Genesis(
        chain_id=chain_id,
        participants=participants,
        accounts=accounts,
        issuance=issuance,
        officers=officers,
        officer_threshold=threshold,
    )
    try:
        genesis.validator_set()
    except ConfigError as exc:
        raise GenesisError(f"participants: {exc}") from exc
    return genesis


def _object(x: object, what: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise GenesisError(f"{what}: expected an object")
    unknown = sorted(set(x) - allowed)
    if unknown:
        raise GenesisError(f"{what}: unknown field {unknown[0]!r}")
    return x


def _id(x: object, what: str) -> str:
    if not is_id(x):
        raise GenesisError(f"{what}: expected an id of {ID_RULE}, got {x!r}")
    return x


def _int(x: object, what: str, lo: int, hi: int) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise GenesisError(f"{what}: expected an integer in [{lo}, {hi}], got {x!r}")
    return x


def _address(x: object, what: str) -> str:
    if not isinstance(x, str) or ":" not in x:
        raise GenesisError(f"{what}: expected host:port, got {x!r}")
    host, _, port = x.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or len(x) > 255:
        raise GenesisError(f"{what}: expected host:port with port 1..65535, got {x!r}")
    return x


def _public_key(x: object, what: str) -> bytes:
    if not isinstance(x, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", x):
        raise GenesisError(f"{what}: expected 64 hex digits (an Ed25519 public key)")
    key = bytes.fromhex(x)
    # Rejects points that do not decode, non-canonical encodings (y >= p) and points of
    # small order, whose "signatures" would verify for many messages.
    if not crypto_core_ed25519_is_valid_point(key):
        raise GenesisError(f"{what}: not a valid Ed25519 public key (small order or non-canonical)")
    return key


def _participant(x: object, what: str) -> Participant:
    allowed = {"id", "name", "role", "public_key", "voting_power", "peer_address"}
    obj = _object(x, what, allowed | {"api_address"})
    participant_id = _id(obj.get("id"), f"{what}.id")
    what = f"participant {participant_id!r}"
    name = obj.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_CHARS_MAX:
        raise GenesisError(f"{what}.name: expected text of 1..{NAME_CHARS_MAX} characters")
    role = obj.get("role")
    if role not in ROLES:
        raise GenesisError(f"{what}.role: expected one of {', '.join(ROLES)}, got {role!r}")
    if role == "bank":
        power = _int(obj.get("voting_power", 0), f"{what}.voting_power", 0, 0)
    else:
        power = _int(obj.get("voting_power"), f"{what}.voting_power", 1, VOTING_POWER_MAX)
    return Participant(
        participant_id=participant_id,
        name=name,
        role=role,
        public_key=_public_key(obj.get("public_key"), f"{what}.public_key"),
        voting_power=power,
        peer_address=_address(obj.get("peer_address"), f"{what}.peer_address"),
        api_address=_address(obj.get("api_address"), f"{what}.api_address"),
    )


def _participants(x: object) -> tuple[Participant, ...]:
    if not isinstance(x, list) or not 1 <= len(x) <= PARTICIPANTS_MAX:
        raise GenesisError(f"participants: expected a list of 1..{PARTICIPANTS_MAX}")
    participants = [_participant(item, f"participants[{i}]") for i, item in enumerate(x)]
    seen_ids: set[str] = set()
    seen_keys: set[bytes] = set()
    for p in participants:
        if p.participant_id in seen_ids:
            raise GenesisError(f"participants: duplicate id {p.participant_id!r}")
        if p.public_key in seen_keys:
            raise GenesisError(f"participants: {p.participant_id!r} reuses a public key")
        seen_ids.add(p.participant_id)
        seen_keys.add(p.public_key)
    issuers = [p.participant_id for p in participants if p.role == "issuer"]
    if len(issuers) != 1:
        raise GenesisError(f"participants: expected exactly one issuer, found {len(issuers)}")
    return tuple(sorted(participants, key=lambda p: p.participant_id))


def _accounts(x: object, participants: tuple[Participant, ...]) -> tuple[Account, ...]:
    if not isinstance(x, list) or len(x) > ACCOUNTS_MAX:
        raise GenesisError(f"accounts: expected a list of at most {ACCOUNTS_MAX}")
    owners = {p.participant_id for p in participants}
    accounts = {pid: Account(account_id=pid, owner=pid) for pid in sorted(owners)}
    listed: set[str] = set()
    for i, item in enumerate(x):
        obj = _object(item, f"accounts[{i}]", {"id", "owner"})
        account_id = _id(obj.get("id"), f"accounts[{i}].id")
        owner = _id(obj.get("owner"), f"account {account_id!r}.owner")
        if owner not in owners:
            raise GenesisError(f"account {account_id!r}.owner: unknown participant {owner!r}")
        if account_id in listed:
            raise GenesisError(f"accounts: duplicate id {account_id!r}")
        if account_id in owners and owner != account_id:
            raise GenesisError(f"account {account_id!r}: is the main account of {account_id!r}")
        listed.add(account_id)
        accounts[account_id] = Account(account_id=account_id, owner=owner)
    return tuple(accounts[a] for a in sorted(accounts))


def _issuance(x: object, accounts: tuple[Account, ...]) -> tuple[tuple[str, int], ...]:
    if not isinstance(x, list) or len(x) > ACCOUNTS_MAX:
        raise GenesisError(f"issuance: expected a list of at most {ACCOUNTS_MAX}")
    known = {a.account_id for a in accounts}
    issuance: list[tuple[str, int]] = []
    total = 0
    for i, item in enumerate(x):
        obj = _object(item, f"issuance[{i}]", {"account", "amount"})
        account_id = _id(obj.get("account"), f"issuance[{i}].account")
        if account_id not in known:
            raise GenesisError(f"issuance[{i}].account: unknown account {account_id!r}")
        amount = _int(obj.get("amount"), f"issuance[{i}].amount", 1, AMOUNT_MAX)
        total += amount
        if total > AMOUNT_MAX:
            raise GenesisError(f"issuance: total exceeds {AMOUNT_MAX} tyiyn")
        issuance.append((account_id, amount))
    return tuple(issuance)


def _officers(x: object, participants: tuple[Participant, ...]) -> tuple[Officer, ...]:
    if not isinstance(x, list) or not 1 <= len(x) <= OFFICERS_MAX:
        raise GenesisError(f"officers: expected a list of 1..{OFFICERS_MAX}")
    participant_ids = {p.participant_id for p in participants}
    keys = {p.public_key for p in participants}
    officers: dict[str, Officer] = {}
    for i, item in enumerate(x):
        obj = _object(item, f"officers[{i}]", {"id", "public_key"})
        officer_id = _id(obj.get("id"), f"officers[{i}].id")
        what = f"officer {officer_id!r}"
        if officer_id in officers or officer_id in participant_ids:
            raise GenesisError(f"officers: {officer_id!r} is already an officer or participant id")
        key = _public_key(obj.get("public_key"), f"{what}.public_key")
        if key in keys:
            # Officer keys are not node keys: one stolen node key must not approve anything.
            raise GenesisError(f"{what}.public_key: reuses an officer's or participant's key")
        keys.add(key)
        officers[officer_id] = Officer(officer_id=officer_id, public_key=key)
    return tuple(officers[o] for o in sorted(officers))
