"""Governance actions (issue 13): what the central bank's officers approve, their
canonical encoding, the approval message, and the governance state's record.

Theory of operation.
- One transaction carries the action and every officer approval (node/tx.py kind
  `Govern`): no proposal/approval round trips on chain, so nothing half-approved lives in
  the state. Its outer signer is the issuer (the central bank's node key, which submits);
  its (signer, UETR) makes it settle exactly once, as every transaction.
- An officer's approval is an Ed25519 signature (detached, 64 bytes) of the approval
  message, a 32-byte digest:

      sha256(b"somnet/gov/v1" || len(chain id) (1 byte) || chain id (ASCII)
             || uetr (16 bytes) || expiry height (8 bytes, big-endian) || approved bytes)

  where the approved bytes are the action's canonical msgpack array (below) without a
  rotation's new-key signature (which signs this same message, so it cannot be inside
  it). The chain id, the UETR and the expiry bind an approval to one transaction of one
  network: it cannot be replayed onto another action, transaction or chain.
- Actions, each a msgpack array whose first element names it (ids follow node/ids.py,
  keys are 32 bytes, canonical Ed25519 points of large order):

      ["admit", id, name, role ("bank" | "validator"), public key, peer address, api address]
      ["suspend", id]            ["reinstate", id]
      ["freeze", account]        ["unfreeze", account]
      ["rotate_key", id, new public key, new key signature (64 bytes)]
      ["set_validators", [[id, voting power], ...] (ids strictly ascending), allow_below_four]

- Approvals: `[[officer id, signature], ...]`, officer ids strictly ascending (so
  distinct), 1..OFFICERS_MAX of them. Decoding checks form only; which approvals count
  (a genesis officer's key, a signature that verifies) is the ledger's rule, and too few
  is a recorded refusal (GOV_NOT_APPROVED), not a malformed transaction.
- Everything here is pure: the ledger (node/ledger.py) applies the rules and effects.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from consensus.config import VALIDATORS_MAX, VOTING_POWER_TOTAL_MAX, Validator, ValidatorSet
from consensus.messages import ValidatorId
from node.errors import RefusalCode, TxRefused
from node.ids import ID_RULE, is_id

__all__ = [
    "ADMITTED_ROLES",
    "NAME_CHARS_MAX",
    "OFFICERS_MAX",
    "VALIDATORS_MAX",
    "VALIDATORS_MIN",
    "VOTING_POWER_MAX",
    "Action",
    "Admit",
    "Freeze",
    "GovernanceState",
    "ParticipantState",
    "Reinstate",
    "RotateKey",
    "SetValidators",
    "Suspend",
    "Unfreeze",
    "approval_message",
    "approve",
    "approved_bytes",
    "count_approvals",
    "decode_action",
    "decode_approvals",
    "decode_governance_state",
    "describe_action",
    "encode_action",
    "new_key_signed",
    "rotate_key",
]

NAME_CHARS_MAX = 200
ADDRESS_CHARS_MAX = 255
VOTING_POWER_MAX = 1000
OFFICERS_MAX = 32
VALIDATORS_MIN = 4  # fewer only when the officers say allow_below_four
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
UETR_SIZE = 16
TAG_APPROVAL = b"somnet/gov/v1"
ADMITTED_ROLES = ("bank", "validator")  # there is one issuer, from genesis
_ADDRESS = re.compile(r"[^:]+:[0-9]{1,5}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Admit:
    participant_id: str
    name: str
    role: str  # "bank" or "validator"
    public_key: bytes
    peer_address: str  # host:port
    api_address: str  # host:port


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspend:
    participant_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reinstate:
    participant_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Freeze:
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfreeze:
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateKey:
    participant_id: str
    new_public_key: bytes
    new_key_signature: bytes  # the new key's signature of the approval message


@dataclass(frozen=True, slots=True, kw_only=True)
class SetValidators:
    validators: tuple[tuple[str, int], ...]  # (participant id, voting power), ids ascending
    allow_below_four: bool


Action = Admit | Suspend | Reinstate | Freeze | Unfreeze | RotateKey | SetValidators


def encode_action(action: Action) -> list[object]:
    """The action as the msgpack array the transaction carries."""
    match action:
        case Admit():
            return [
                "admit",
                action.participant_id,
                action.name,
                action.role,
                action.public_key,
                action.peer_address,
                action.api_address,
            ]
        case Suspend():
            return ["suspend", action.participant_id]
        case Reinstate():
            return ["reinstate", action.participant_id]
        case Freeze():
            return ["freeze", action.account]
        case Unfreeze():
            return ["unfreeze", action.account]
        case RotateKey():
            return [
                "rotate_key",
                action.participant_id,
                action.new_public_key,
                action.new_key_signature,
            ]
        case SetValidators():
            validators = [[pid, power] for pid, power in action.validators]
            return ["set_validators", validators, action.allow_below_four]
    raise AssertionError(f"unknown action {action!r}")  # pragma: no cover


def describe_action(action: Action) -> dict[str, object]:
    """The action as JSON for reports and the API: its name and fields, keys in hex.
    Governance is public to every participant."""
    fields = encode_action(action)
    name = fields[0]
    if type(action) is Admit:
        return {"action": name, "id": action.participant_id, "name": action.name,
                "role": action.role, "public_key": action.public_key.hex(),
                "peer_address": action.peer_address, "api_address": action.api_address}  # fmt: skip
    if type(action) is RotateKey:
        return {"action": name, "id": action.participant_id,
                "new_public_key": action.new_public_key.hex()}  # fmt: skip
    if type(action) is SetValidators:
        validators = [{"id": pid, "voting_power": power} for pid, power in action.validators]
        return {"action": name, "validators": validators,
                "allow_below_four": action.allow_below_four}  # fmt: skip
    if type(action) is Freeze or type(action) is Unfreeze:
        return {"action": name, "account": action.account}
    return {"action": name, "id": fields[1]}


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def approved_bytes(action: Action) -> bytes:
    """What every approval covers: the action's encoding, without a rotation's new-key
    signature (that key signs the same message)."""
    fields = encode_action(action)
    if type(action) is RotateKey:
        fields = fields[:3]
    return _pack(fields)


def approval_message(chain_id: str, uetr: bytes, expiry_height: int, action: Action) -> bytes:
    """The 32-byte digest that officers (and a rotation's new key) sign."""
    chain = chain_id.encode("ascii")
    assert 1 <= len(chain) <= 255
    assert len(uetr) == UETR_SIZE
    assert 1 <= expiry_height < 2**63
    return hashlib.sha256(
        TAG_APPROVAL
        + bytes((len(chain),))
        + chain
        + uetr
        + expiry_height.to_bytes(8, "big")
        + approved_bytes(action)
    ).digest()


def approve(
    action: Action,
    *,
    chain_id: str,
    uetr: bytes,
    expiry_height: int,
    officer_id: str,
    officer_key: SigningKey,
) -> tuple[str, bytes]:
    """One officer's approval of `action` in the transaction (uetr, expiry_height): the
    (officer id, signature) pair `node.tx.sign_govern` takes."""
    message = approval_message(chain_id, uetr, expiry_height, action)
    return officer_id, officer_key.sign(message).signature


def rotate_key(
    participant_id: str,
    new_key: SigningKey,
    *,
    chain_id: str,
    uetr: bytes,
    expiry_height: int,
) -> RotateKey:
    """A rotation signed by the new key (its holder runs this), ready for approvals."""
    unsigned = RotateKey(
        participant_id=participant_id,
        new_public_key=bytes(new_key.verify_key),
        new_key_signature=bytes(SIGNATURE_SIZE),
    )
    message = approval_message(chain_id, uetr, expiry_height, unsigned)
    signature = new_key.sign(message).signature
    return RotateKey(
        participant_id=participant_id,
        new_public_key=unsigned.new_public_key,
        new_key_signature=signature,
    )


def _verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def new_key_signed(action: RotateKey, message: bytes) -> bool:
    """True if the rotation's new key signed the approval message."""
    return _verifies(action.new_public_key, message, action.new_key_signature)


def count_approvals(
    message: bytes, approvals: tuple[tuple[str, bytes], ...], officers: Mapping[str, bytes]
) -> int:
    """How many distinct genesis officers approved `message`. An approval by an id that is
    no officer, or whose signature does not verify with that officer's key, counts for
    nothing; ids are distinct (decoding requires it), so no officer counts twice."""
    assert len({officer_id for officer_id, _ in approvals}) == len(approvals)
    count = 0
    for officer_id, signature in approvals:
        key = officers.get(officer_id)
        if key is not None and _verifies(key, message, signature):
            count += 1
    return count


# ---------------------------------------------------------------------------------------
# Decoding: from the arrays msgpack gave `node.tx.decode_tx` (already bounded by its
# limits and checked canonical there). Strict types; MALFORMED on anything else.


def _malformed(message: str) -> TxRefused:
    return TxRefused(RefusalCode.MALFORMED, f"govern: {message}")


def _id(x: object, what: str) -> str:
    if not is_id(x):
        raise _malformed(f"{what}: expected an id of {ID_RULE}")
    return x


def _key(x: object, what: str) -> bytes:
    if type(x) is not bytes or len(x) != PUBLIC_KEY_SIZE:
        raise _malformed(f"{what}: expected {PUBLIC_KEY_SIZE} bytes")
    # Points that do not decode, non-canonical encodings and small-order points, whose
    # "signatures" verify for many messages, are never keys (as in genesis).
    if not crypto_core_ed25519_is_valid_point(x):
        raise _malformed(f"{what}: not a valid Ed25519 public key")
    return x


def _signature(x: object, what: str) -> bytes:
    if type(x) is not bytes or len(x) != SIGNATURE_SIZE:
        raise _malformed(f"{what}: expected a {SIGNATURE_SIZE}-byte signature")
    return x


def _address(x: object, what: str) -> str:
    if (
        type(x) is not str
        or len(x) > ADDRESS_CHARS_MAX
        or not x.isascii()
        or _ADDRESS.fullmatch(x) is None
        or not 1 <= int(x.rpartition(":")[2]) <= 65535
    ):
        raise _malformed(f"{what}: expected host:port with port 1..65535")
    return x


def _arity(f: list[Any], count: int) -> list[Any]:
    if len(f) != count:
        raise _malformed(f"action {f[0]!r}: expected {count} fields")
    return f[1:]


def decode_action(x: object) -> Action:
    """The action of a govern transaction. Raises TxRefused MALFORMED."""
    if type(x) is not list or not x or type(x[0]) is not str:
        raise _malformed("action: expected an array starting with its name")
    name = x[0]
    if name == "admit":
        pid, label, role, key, peer, api = _arity(x, 7)
        if type(label) is not str or not 1 <= len(label) <= NAME_CHARS_MAX:
            raise _malformed(f"admit name: expected text of 1..{NAME_CHARS_MAX} characters")
        if type(role) is not str or role not in ADMITTED_ROLES:
            raise _malformed(f"admit role: expected one of {', '.join(ADMITTED_ROLES)}")
        return Admit(
            participant_id=_id(pid, "admit id"),
            name=label,
            role=role,
            public_key=_key(key, "admit public key"),
            peer_address=_address(peer, "admit peer address"),
            api_address=_address(api, "admit api address"),
        )
    if name == "suspend":
        (pid,) = _arity(x, 2)
        return Suspend(participant_id=_id(pid, "suspend id"))
    if name == "reinstate":
        (pid,) = _arity(x, 2)
        return Reinstate(participant_id=_id(pid, "reinstate id"))
    if name == "freeze":
        (account,) = _arity(x, 2)
        return Freeze(account=_id(account, "freeze account"))
    if name == "unfreeze":
        (account,) = _arity(x, 2)
        return Unfreeze(account=_id(account, "unfreeze account"))
    if name == "rotate_key":
        pid, key, signature = _arity(x, 4)
        return RotateKey(
            participant_id=_id(pid, "rotate_key id"),
            new_public_key=_key(key, "rotate_key new public key"),
            new_key_signature=_signature(signature, "rotate_key new key signature"),
        )
    if name == "set_validators":
        entries, allow = _arity(x, 3)
        return SetValidators(validators=_validators(entries), allow_below_four=_bool(allow))
    raise _malformed(f"action: unknown name {name[:64]!r}")


def _bool(x: object) -> bool:
    if type(x) is not bool:
        raise _malformed("set_validators allow_below_four: expected true or false")
    return x


def _validators(x: object) -> tuple[tuple[str, int], ...]:
    if type(x) is not list or not 1 <= len(x) <= VALIDATORS_MAX:
        raise _malformed(f"set_validators: expected 1..{VALIDATORS_MAX} validators")
    validators: list[tuple[str, int]] = []
    for index, entry in enumerate(x):
        if type(entry) is not list or len(entry) != 2:
            raise _malformed(f"set_validators entry {index}: expected [id, voting power]")
        pid = _id(entry[0], f"set_validators entry {index} id")
        if validators and pid <= validators[-1][0]:
            raise _malformed("set_validators: ids must be strictly ascending")
        power = entry[1]
        if type(power) is not int or not 1 <= power <= VOTING_POWER_MAX:
            raise _malformed(
                f"set_validators entry {index}: voting power must be 1..{VOTING_POWER_MAX}"
            )
        validators.append((pid, power))
    if sum(power for _, power in validators) > VOTING_POWER_TOTAL_MAX:
        raise _malformed(f"set_validators: total voting power exceeds {VOTING_POWER_TOTAL_MAX}")
    return tuple(validators)


def decode_approvals(x: object) -> tuple[tuple[str, bytes], ...]:
    """The approvals of a govern transaction: 1..OFFICERS_MAX, officer ids strictly
    ascending. Raises TxRefused MALFORMED."""
    if type(x) is not list or not 1 <= len(x) <= OFFICERS_MAX:
        raise _malformed(f"approvals: expected 1..{OFFICERS_MAX} [officer id, signature]")
    approvals: list[tuple[str, bytes]] = []
    for index, entry in enumerate(x):
        if type(entry) is not list or len(entry) != 2:
            raise _malformed(f"approval {index}: expected [officer id, signature]")
        officer_id = _id(entry[0], f"approval {index} officer id")
        if approvals and officer_id <= approvals[-1][0]:
            raise _malformed("approvals: officer ids must be strictly ascending (distinct)")
        approvals.append((officer_id, _signature(entry[1], f"approval {index} signature")))
    return tuple(approvals)


# ---------------------------------------------------------------------------------------
# The governance state: what the ledger keeps, commits to in the app hash and stores.


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantState:
    """A participant as governance left it (genesis's, or admitted since)."""

    participant_id: str
    name: str
    role: str  # "issuer", "validator" or "bank"
    public_key: bytes  # signs its transactions from height `key_height` on
    peer_address: str
    api_address: str
    suspended: bool
    key_height: int  # first height its key is in force: 0 for a genesis key
    retired_keys: tuple[bytes, ...]  # its earlier keys, oldest first: never used again


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernanceState:
    """Participants, frozen accounts and the validator-set schedule after a block.

    Record encoding (canonical msgpack), whose sha256 is the `governance_hash` in the
    state root (node/ledger.py state_root_of):

        [b"somnet/governance/v1",
         [[id, name, role, public key, peer address, api address, suspended,
           key height, [retired key, ...]], ...]         (ids ascending)
         [frozen account, ...]                           (ascending)
         [[from height, [[id, public key, voting power], ...]], ...]]  (heights ascending)

    A schedule entry (h, set) says `set` is in force from height h until the next entry.
    """

    participants: tuple[ParticipantState, ...]  # ids ascending
    frozen: tuple[str, ...]  # ascending
    schedule: tuple[tuple[int, ValidatorSet], ...]  # (from height, set), heights ascending

    def encode(self) -> bytes:
        assert all(a.participant_id < b.participant_id for a, b in _pairs(self.participants))
        assert all(a < b for a, b in _pairs(self.frozen))
        assert all(a[0] < b[0] for a, b in _pairs(self.schedule))
        return _pack(
            [
                TAG_GOVERNANCE_STATE,
                [
                    [
                        p.participant_id,
                        p.name,
                        p.role,
                        p.public_key,
                        p.peer_address,
                        p.api_address,
                        p.suspended,
                        p.key_height,
                        list(p.retired_keys),
                    ]
                    for p in self.participants
                ],
                list(self.frozen),
                [
                    [
                        height,
                        [[v.validator_id, v.public_key, v.voting_power] for v in s.validators],
                    ]
                    for height, s in self.schedule
                ],
            ]
        )


TAG_GOVERNANCE_STATE = b"somnet/governance/v1"


def _pairs(items: tuple[Any, ...]) -> Iterator[tuple[Any, Any]]:
    return itertools.pairwise(items)


def decode_governance_state(data: bytes) -> GovernanceState:
    """Decode a stored governance record. Raises ValueError if it is not one we wrote
    (the caller reports a corrupt store)."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        tag, participants, frozen, schedule = obj
        if tag != TAG_GOVERNANCE_STATE:
            raise ValueError("not a governance record")
        state = GovernanceState(
            participants=tuple(
                ParticipantState(
                    participant_id=pid,
                    name=name,
                    role=role,
                    public_key=key,
                    peer_address=peer,
                    api_address=api,
                    suspended=suspended,
                    key_height=key_height,
                    retired_keys=tuple(retired),
                )
                for pid, name, role, key, peer, api, suspended, key_height, retired in participants
            ),
            frozen=tuple(frozen),
            schedule=tuple(
                (
                    height,
                    ValidatorSet(
                        tuple(
                            Validator(
                                validator_id=ValidatorId(vid), public_key=key, voting_power=power
                            )
                            for vid, key, power in validators
                        )
                    ),
                )
                for height, validators in schedule
            ),
        )
        if state.encode() != data:
            raise ValueError("not the canonical encoding")
    except ValueError:
        raise
    except Exception as exc:  # msgpack, unpacking and ConfigError: all mean one thing
        raise ValueError(f"not a governance record: {type(exc).__name__}: {exc}") from exc
    return state
