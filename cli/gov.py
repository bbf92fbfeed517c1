"""`somnet gov`: the central bank's governance actions under four-eyes control (issue 13).

One action file passes from hand to hand; nothing reaches the network until enough
officers signed it:

    somnet gov freeze --account bank-1 --home CB_HOME --out freeze.json    # prepare
    somnet gov sign freeze.json --officer-key officers/officer-1.json      # officer 1
    somnet gov sign freeze.json --officer-key officers/officer-2.json      # officer 2
    somnet gov submit freeze.json --home CB_HOME --wait                    # send it
    somnet gov show --home DIR                                             # the result

Preparing fixes everything the officers approve: the chain, the UETR and the expiry
height of the one governance transaction that will carry the action (node/governance.py:
an approval signs exactly those and the action, so it cannot be moved to another action,
transaction or chain). The expiry comes from the node's height (--home, through its API)
or is given (--expiry-height, offline). A rotation is prepared by the holder of the new
key (--new-key), whose signature goes into the action.

The action file (JSON, version 1) holds the action twice: readable fields, for the
officers to read, and its canonical encoding (hex), which is what they sign. Every command
that reads the file checks that the two say the same, that the encoding is canonical, and
that every approval in it verifies; an edited file is refused, never signed or sent.

    {"version": 1, "chain_id": ..., "uetr": "<UUID>", "expiry_height": H,
     "action": {"action": "freeze", "account": "bank-1"}, "encoded": "<hex>",
     "approvals": [{"officer": "officer-1", "public_key": "<hex>", "signature": "<hex>"}]}

`submit` counts only approvals by genesis officers whose signature verifies with the key
genesis names; short of the threshold it sends nothing (exit 2). The central bank's node
key signs the transaction (its node directory is --home); the ledger refuses a govern
transaction from anyone else with NOT_AUTHORIZED.

Failures print `somnet gov: CODE: message`; exit 1 when a node refused or could not be
reached, 2 when the input is wrong (then nothing was sent).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from cli.api_client import ApiClient, blocking, client_for_home
from cli.command import (
    EXIT_BAD_INPUT,
    CommandFailed,
    add_api_options,
    bad_input,
    client_of,
    print_fields,
    print_table,
    reports_failures,
)
from cli.submit import expiry_height, new_uetr, submit_and_wait, unsettled
from node.config import load_config
from node.errors import TxRefused
from node.genesis import Genesis, load_genesis
from node.governance import (
    ADMITTED_ROLES,
    Action,
    Admit,
    Freeze,
    Reinstate,
    RotateKey,
    SetValidators,
    Suspend,
    Unfreeze,
    approval_message,
    approve,
    decode_action,
    describe_action,
    encode_action,
    rotate_key,
)
from node.ids import ID_RULE, is_id
from node.keys import load_key_file
from node.ledger import EXPIRY_HEIGHTS_MAX
from node.tx import sign_govern

__all__ = [
    "ACTION_FILE_VERSION",
    "ActionFile",
    "ActionFileError",
    "Approval",
    "add_approval",
    "approvals_counted",
    "decode_action_file",
    "encode_action_file",
    "readable",
    "register",
]

Json = dict[str, Any]

ACTION_FILE_VERSION = 1
ACTION_FILE_BYTES_MAX = 1024 * 1024  # an action with 32 approvals is a few kilobytes
GOV_EXPIRY_BLOCKS_DEFAULT = 5_000
"""Blocks an action stays valid: time for the officers to sign (hours at one block each
few seconds), within the ledger's EXPIRY_HEIGHTS_MAX."""
assert GOV_EXPIRY_BLOCKS_DEFAULT <= EXPIRY_HEIGHTS_MAX
COMMAND = "gov"


class ActionFileError(ValueError):
    """An action file that is not one `somnet gov` wrote, or was changed since."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    officer_id: str
    public_key: bytes  # the key that made the signature (genesis must name it the officer's)
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionFile:
    chain_id: str
    uetr: bytes
    expiry_height: int
    action: Action
    approvals: tuple[Approval, ...]  # officer ids ascending, distinct, keys distinct

    @property
    def message(self) -> bytes:
        """What every approval signs."""
        return approval_message(self.chain_id, self.uetr, self.expiry_height, self.action)


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def readable(action: Action) -> Json:
    """The action's fields for people: node.governance.describe_action, plus a rotation's
    new-key signature (part of the encoding, so part of what the file shows)."""
    fields = describe_action(action)
    if type(action) is RotateKey:
        fields["new_key_signature"] = action.new_key_signature.hex()
    return fields


def encode_action_file(action_file: ActionFile) -> str:
    document = {
        "version": ACTION_FILE_VERSION,
        "chain_id": action_file.chain_id,
        "uetr": str(uuid.UUID(bytes=action_file.uetr)),
        "expiry_height": action_file.expiry_height,
        "action": readable(action_file.action),
        "encoded": _pack(encode_action(action_file.action)).hex(),
        "approvals": [
            {
                "officer": a.officer_id,
                "public_key": a.public_key.hex(),
                "signature": a.signature.hex(),
            }
            for a in action_file.approvals
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _field(document: Mapping[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if type(value) is not kind:
        raise ActionFileError(f"{name}: expected a {kind.__name__}")
    return value


def _hex(text: object, what: str, size: int | None = None) -> bytes:
    try:
        data = bytes.fromhex(text) if type(text) is str else None
    except ValueError:
        data = None
    if data is None or (size is not None and len(data) != size):
        expected = f"{size * 2} hex digits" if size is not None else "hex"
        raise ActionFileError(f"{what}: expected {expected}")
    return data


def _verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def decode_action_file(text: str) -> ActionFile:
    """The action file in `text`, checked: its encoding decodes, is canonical and says
    what its readable fields say, and every approval verifies with its key.

    Raises:
        ActionFileError: naming the first problem.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ActionFileError(f"not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ActionFileError("expected a JSON object")
    if document.get("version") != ACTION_FILE_VERSION or type(document["version"]) is not int:
        raise ActionFileError(f"version: expected {ACTION_FILE_VERSION}")
    chain_id = _field(document, "chain_id", str)
    if not 1 <= len(chain_id) <= 255 or not chain_id.isascii():
        raise ActionFileError("chain_id: expected 1..255 ASCII characters")
    try:
        uetr = uuid.UUID(_field(document, "uetr", str)).bytes
    except ValueError as exc:
        raise ActionFileError("uetr: expected a UUID") from exc
    expiry = _field(document, "expiry_height", int)
    if not 1 <= expiry < 2**63:
        raise ActionFileError("expiry_height: expected 1..2**63-1")
    encoded = _hex(document.get("encoded"), "encoded")
    try:
        action = decode_action(msgpack.unpackb(encoded, raw=False, strict_map_key=True))
    except TxRefused as exc:
        raise ActionFileError(f"encoded: {exc.message}") from exc
    except ValueError as exc:  # msgpack's errors are ValueErrors
        raise ActionFileError(f"encoded: not msgpack ({exc})") from exc
    if _pack(encode_action(action)) != encoded:
        raise ActionFileError("encoded: not the canonical encoding of its action")
    if document.get("action") != readable(action):
        raise ActionFileError("action: the readable fields do not match the encoded action")
    action_file = ActionFile(
        chain_id=chain_id, uetr=uetr, expiry_height=expiry, action=action, approvals=()
    )
    approvals = _approvals(_field(document, "approvals", list), action_file.message)
    return replace(action_file, approvals=approvals)


def _approvals(items: list[Any], message: bytes) -> tuple[Approval, ...]:
    approvals: list[Approval] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not is_id(item.get("officer")):
            raise ActionFileError(f"approval {index}: expected an officer id of {ID_RULE}")
        approval = Approval(
            officer_id=item["officer"],
            public_key=_hex(item.get("public_key"), f"approval {index} public_key", 32),
            signature=_hex(item.get("signature"), f"approval {index} signature", 64),
        )
        if approvals and approval.officer_id <= approvals[-1].officer_id:
            raise ActionFileError("approvals: officer ids must be distinct and ascending")
        if any(a.public_key == approval.public_key for a in approvals):
            raise ActionFileError(f"approval {index}: a key that already approved")
        if not _verifies(approval.public_key, message, approval.signature):
            raise ActionFileError(
                f"approval of {approval.officer_id} does not verify: the file changed after"
                " it was signed"
            )
        approvals.append(approval)
    return tuple(approvals)


def add_approval(action_file: ActionFile, officer_id: str, key: SigningKey) -> ActionFile:
    """The file with one more officer's approval.

    Raises:
        ActionFileError: the officer (by id or by key) approved already.
    """
    public_key = bytes(key.verify_key)
    for approval in action_file.approvals:
        if approval.officer_id == officer_id or approval.public_key == public_key:
            raise ActionFileError(f"{approval.officer_id} approved this action already")
    _, signature = approve(
        action_file.action,
        chain_id=action_file.chain_id,
        uetr=action_file.uetr,
        expiry_height=action_file.expiry_height,
        officer_id=officer_id,
        officer_key=key,
    )
    approval = Approval(officer_id=officer_id, public_key=public_key, signature=signature)
    approvals = sorted((*action_file.approvals, approval), key=lambda a: a.officer_id)
    return replace(action_file, approvals=tuple(approvals))


def approvals_counted(action_file: ActionFile, genesis: Genesis) -> tuple[list[str], list[str]]:
    """(the officers whose approvals the ledger counts, why each other one does not): an
    approval counts when genesis names its officer with the key that signed it (every
    signature in a decoded file verifies with its key)."""
    officers = {o.officer_id: o.public_key for o in genesis.officers}
    counted, ignored = [], []
    for approval in action_file.approvals:
        key = officers.get(approval.officer_id)
        if key is None:
            ignored.append(f"{approval.officer_id} is not a genesis officer")
        elif key != approval.public_key:
            ignored.append(f"{approval.officer_id} signed with a key genesis does not name")
        else:
            counted.append(approval.officer_id)
    return counted, ignored


# ---------------------------------------------------------------------------------------
# Files.


def _read_action_file(path: Path) -> ActionFile:
    try:
        with path.open("rb") as file:
            data = file.read(ACTION_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise bad_input(f"{path}: {exc.strerror}", code="INVALID_ACTION_FILE") from exc
    if len(data) > ACTION_FILE_BYTES_MAX:
        raise bad_input(
            f"{path}: larger than {ACTION_FILE_BYTES_MAX} bytes", code="INVALID_ACTION_FILE"
        )
    try:
        return decode_action_file(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad_input(f"{path}: not UTF-8 ({exc.reason})", code="INVALID_ACTION_FILE") from exc
    except ActionFileError as exc:
        raise bad_input(f"{path}: {exc}", code="INVALID_ACTION_FILE") from exc


def _create(path: Path, text: str) -> None:
    """Write a new action file; never overwrite one (it may hold approvals)."""
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as exc:
        raise bad_input(f"{path}: exists; refusing to overwrite", code="FILE_EXISTS") from exc
    except OSError as exc:
        raise bad_input(f"{path}: {exc.strerror}") from exc


def _replace(path: Path, text: str) -> None:
    """Rewrite an action file at once: a reader sees the old file or the new, never half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------
# Preparing an action.


def _checked_id(text: str, what: str) -> str:
    if not is_id(text):
        raise bad_input(f"{what} {text!r}: expected an id of {ID_RULE}")
    return text


def _checked(action: Action) -> Action:
    """The action as the ledger will decode it: every field rule of node/governance.py
    (ids, keys, addresses, powers) holds, or TxRefused MALFORMED (exit 2)."""
    decoded = decode_action(msgpack.unpackb(_pack(encode_action(action)), raw=False))
    assert decoded == action
    return decoded


def _public_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise bad_input(f"public key {text[:80]!r}: expected 64 hex digits")
    return key


def _validators(entries: Sequence[str]) -> tuple[tuple[str, int], ...]:
    validators: dict[str, int] = {}
    for entry in entries:
        pid, equals, power_text = entry.partition("=")
        if not equals or not power_text.isdigit():
            raise bad_input(f"--validator {entry!r}: expected id=voting_power")
        if _checked_id(pid, "validator") in validators:
            raise bad_input(f"--validator {pid}: named twice")
        validators[pid] = int(power_text)
    return tuple(sorted(validators.items()))


def _action_of(args: argparse.Namespace, chain_id: str, uetr: bytes, expiry: int) -> Action:
    kind = args.gov_command
    if kind == "admit":
        return Admit(
            participant_id=_checked_id(args.id, "id"),
            name=args.name,
            role=args.role,
            public_key=_public_key(args.public_key),
            peer_address=args.peer_address,
            api_address=args.api_address,
        )
    if kind in ("suspend", "reinstate"):
        pid = _checked_id(args.id, "id")
        return Suspend(participant_id=pid) if kind == "suspend" else Reinstate(participant_id=pid)
    if kind in ("freeze", "unfreeze"):
        account = _checked_id(args.account, "account")
        return Freeze(account=account) if kind == "freeze" else Unfreeze(account=account)
    if kind == "rotate-key":
        new_key = load_key_file(args.new_key)
        pid = _checked_id(args.id, "id")
        return rotate_key(pid, new_key, chain_id=chain_id, uetr=uetr, expiry_height=expiry)
    assert kind == "set-validators"
    validators = _validators(args.validator)
    return SetValidators(validators=validators, allow_below_four=args.allow_below_four)


def _prepared_chain(args: argparse.Namespace) -> tuple[str, int]:
    """The chain id and expiry height of a new action, from --home (the expiry from the
    node's height, unless --expiry-height) or from --genesis with --expiry-height."""
    if args.expiry_height is not None and not 1 <= args.expiry_height < 2**63:
        raise bad_input(f"--expiry-height {args.expiry_height}: expected 1..2**63-1")
    if not 1 <= args.expiry_blocks <= EXPIRY_HEIGHTS_MAX:
        raise bad_input(f"--expiry-blocks {args.expiry_blocks}: expected 1..{EXPIRY_HEIGHTS_MAX}")
    if args.home is None:
        if args.genesis is None or args.expiry_height is None:
            raise bad_input("give --home DIR, or --genesis FILE with --expiry-height H")
        return load_genesis(args.genesis).chain_id, args.expiry_height
    genesis = load_genesis(args.genesis or load_config(args.home).genesis_file)
    if args.expiry_height is not None:
        return genesis.chain_id, args.expiry_height
    client = client_for_home(args.home, api_url=args.api, ca_file=args.ca)
    blocks = args.expiry_blocks
    return genesis.chain_id, blocking(client, lambda api: expiry_height(api, blocks))


@reports_failures(COMMAND)
def cmd_prepare(args: argparse.Namespace) -> int:
    try:
        uetr = new_uetr(args.uetr)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    chain_id, expiry = _prepared_chain(args)
    action = _checked(_action_of(args, chain_id, uetr, expiry))
    action_file = ActionFile(
        chain_id=chain_id, uetr=uetr, expiry_height=expiry, action=action, approvals=()
    )
    _create(args.out, encode_action_file(action_file))
    _print_action_file(args.out, action_file)
    return 0


def _print_action_file(path: Path, action_file: ActionFile, threshold: int | None = None) -> None:
    fields = readable(action_file.action)
    approved = ", ".join(a.officer_id for a in action_file.approvals) or "none yet"
    count = f" ({len(action_file.approvals)} of {threshold} needed)" if threshold else ""
    print_fields(
        [
            ("file", path),
            *((name.replace("_", " "), _shown(value)) for name, value in fields.items()),
            ("chain", action_file.chain_id),
            ("uetr", str(uuid.UUID(bytes=action_file.uetr))),
            ("expiry height", action_file.expiry_height),
            ("approvals", approved + count),
        ]
    )


def _shown(value: object) -> object:
    if isinstance(value, list):  # set_validators: id=power ...
        return " ".join(f"{v['id']}={v['voting_power']}" for v in value)
    return value


# ---------------------------------------------------------------------------------------
# Signing and submitting.


def _officer_id(args: argparse.Namespace, key: SigningKey, genesis: Genesis | None) -> str:
    """Who signs: with --genesis, the officer genesis names with this key (and --officer,
    if given, must be that one); without, --officer or the key file's name (`somnet init`
    writes officers/officer-N.json)."""
    if genesis is None:
        officer_id = args.officer or args.officer_key.stem
        if not is_id(officer_id):
            raise bad_input(
                f"officer id {officer_id!r}: expected an id of {ID_RULE}; give --officer"
            )
        return str(officer_id)
    public_key = bytes(key.verify_key)
    named = [o.officer_id for o in genesis.officers if o.public_key == public_key]
    if not named:
        message = f"{args.officer_key}: not the key of an officer of {args.genesis}"
        raise bad_input(message, code="NOT_AN_OFFICER")
    if args.officer is not None and args.officer != named[0]:
        message = f"{args.officer_key} is {named[0]}'s key, not {args.officer}'s"
        raise bad_input(message, code="NOT_AN_OFFICER")
    return named[0]


@reports_failures(COMMAND)
def cmd_sign(args: argparse.Namespace) -> int:
    action_file = _read_action_file(args.action_file)
    key = load_key_file(args.officer_key)
    genesis = load_genesis(args.genesis) if args.genesis is not None else None
    if genesis is not None and genesis.chain_id != action_file.chain_id:
        message = (
            f"the action is for chain {action_file.chain_id!r}, genesis is {genesis.chain_id!r}"
        )
        raise bad_input(message, code="WRONG_CHAIN")
    officer_id = _officer_id(args, key, genesis)
    try:
        signed = add_approval(action_file, officer_id, key)
    except ActionFileError as exc:
        raise bad_input(str(exc), code="ALREADY_SIGNED") from exc
    _replace(args.action_file, encode_action_file(signed))
    _print_action_file(args.action_file, signed, genesis.officer_threshold if genesis else None)
    return 0


@reports_failures(COMMAND)
def cmd_submit(args: argparse.Namespace) -> int:
    action_file = _read_action_file(args.action_file)
    genesis = load_genesis(load_config(args.home).genesis_file)
    if genesis.chain_id != action_file.chain_id:
        message = (
            f"the action is for chain {action_file.chain_id!r}, this node's is {genesis.chain_id!r}"
        )
        raise bad_input(message, code="WRONG_CHAIN")
    counted, ignored = approvals_counted(action_file, genesis)
    missing = genesis.officer_threshold - len(counted)
    if missing > 0:
        why = f" ({'; '.join(ignored)})" if ignored else ""
        message = (
            f"{len(counted)} of the {genesis.officer_threshold} officer approvals needed{why}:"
            f" {missing} more needed; nothing was sent"
        )
        raise CommandFailed("GOV_NOT_APPROVED", message, exit_code=EXIT_BAD_INPUT)
    client = client_of(args)
    credentials = client.credentials
    approvals = [(a.officer_id, a.signature) for a in action_file.approvals]
    tx = sign_govern(
        credentials.signing_key,
        action_file.chain_id,
        signer=credentials.participant_id,
        uetr=action_file.uetr,
        expiry_height=action_file.expiry_height,
        action=action_file.action,
        approvals=approvals,
    )
    result = blocking(client, lambda api: submit_and_wait(api, tx, wait=args.wait))
    summary = {
        "action": readable(action_file.action),
        "uetr": str(uuid.UUID(bytes=action_file.uetr)),
        "approvals": [a.officer_id for a in action_file.approvals],
        **result,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print_fields(
            [
                ("action", readable(action_file.action)["action"]),
                ("approvals", ", ".join(summary["approvals"])),
                ("uetr", summary["uetr"]),
                ("tx hash", result.get("tx_hash")),
                ("status", result.get("code") or result.get("status")),
                ("height", result.get("height")),
            ]
        )
    failure = unsettled(result, waited=args.wait)
    if failure is not None:
        raise failure
    return 0


# ---------------------------------------------------------------------------------------
# Reading.


@reports_failures(COMMAND)
def cmd_show(args: argparse.Namespace) -> int:
    answer = blocking(client_of(args), ApiClient.governance)
    if args.json:
        print(json.dumps(answer))
        return 0
    officers = ", ".join(answer["officers"])
    threshold = answer["officer_threshold"]
    print(f"height {answer['height']}; officers {officers}; {threshold} approve each action")
    print()
    print_table(
        ["PARTICIPANT", "ROLE", "SUSPENDED", "PUBLIC KEY", "NAME"],
        [
            [p["id"], p["role"], "yes" if p["suspended"] else "no", p["public_key"], p["name"]]
            for p in answer["participants"]
        ],
    )
    print()
    height = int(answer["height"])
    print_table(
        ["FROM HEIGHT", "STATE", "VALIDATORS"],
        [
            [
                str(entry["from_height"]),
                "scheduled" if entry["from_height"] > max(height, 1) else "in force",
                " ".join(f"{v['id']}={v['voting_power']}" for v in entry["validators"]),
            ]
            for entry in answer["validators"]
        ],
    )
    print()
    print_table(["FROZEN ACCOUNT"], [[account] for account in answer["frozen_accounts"]])
    return 0


# ---------------------------------------------------------------------------------------
# The command line.


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="a node directory: its genesis names the chain, its API gives the height",
    )
    parser.add_argument("--api", default=None, help="call this API URL instead of the node's own")
    parser.add_argument("--ca", type=Path, default=None, help="the CA file that signed its TLS")
    parser.add_argument(
        "--genesis",
        type=Path,
        default=None,
        help="the genesis file (offline, with --expiry-height)",
    )
    parser.add_argument(
        "--expiry-height",
        type=int,
        default=None,
        metavar="H",
        help="the last height it may settle at",
    )
    parser.add_argument(
        "--expiry-blocks",
        type=int,
        default=GOV_EXPIRY_BLOCKS_DEFAULT,
        metavar="N",
        help=f"else the node's height + N (default {GOV_EXPIRY_BLOCKS_DEFAULT})",
    )
    parser.add_argument(
        "--uetr", default=None, help="UUID of the transaction; a fresh one if omitted"
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="ACTION_FILE", help="the action file to create"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gov = subparsers.add_parser(
        "gov", help="governance: prepare, sign (officers), submit (central bank) and show"
    )
    commands = gov.add_subparsers(dest="gov_command", required=True, metavar="GOV_COMMAND")

    admit = commands.add_parser("admit", help="admit a new participant")
    admit.add_argument("--id", required=True)
    admit.add_argument("--name", required=True)
    admit.add_argument("--role", required=True, choices=ADMITTED_ROLES)
    admit.add_argument("--public-key", required=True, metavar="HEX", help="its Ed25519 key")
    admit.add_argument("--peer-address", required=True, metavar="HOST:PORT")
    admit.add_argument("--api-address", required=True, metavar="HOST:PORT")
    for kind, verb in (("suspend", "suspend"), ("reinstate", "reinstate")):
        parser = commands.add_parser(kind, help=f"{verb} a participant")
        parser.add_argument("--id", required=True)
    helps = {"freeze": "freeze an account: no debits (credits stay allowed)",
             "unfreeze": "unfreeze an account: debits allowed again"}  # fmt: skip
    for kind in ("freeze", "unfreeze"):
        parser = commands.add_parser(kind, help=helps[kind])
        parser.add_argument("--account", required=True)
    rotate = commands.add_parser("rotate-key", help="replace a participant's key")
    rotate.add_argument("--id", required=True)
    rotate.add_argument(
        "--new-key",
        required=True,
        type=Path,
        metavar="FILE",
        help="the new key's key file: it signs",
    )
    validators = commands.add_parser("set-validators", help="the whole new validator set")
    validators.add_argument(
        "--validator",
        action="append",
        required=True,
        metavar="ID=POWER",
        help="a validator and its voting power; repeat for each",
    )
    validators.add_argument(
        "--allow-below-four", action="store_true", help="allow fewer than 4 validators"
    )
    for parser in (admit, rotate, validators, *(commands.choices[k] for k in
                   ("suspend", "reinstate", "freeze", "unfreeze"))):  # fmt: skip
        _add_prepare_options(parser)
        parser.set_defaults(handler=cmd_prepare)

    sign = commands.add_parser("sign", help="add one officer's approval to an action file")
    sign.add_argument("action_file", type=Path, metavar="ACTION_FILE")
    sign.add_argument("--officer-key", required=True, type=Path, metavar="FILE")
    sign.add_argument(
        "--officer",
        default=None,
        metavar="ID",
        help="the officer's id (default: the key file's name)",
    )
    sign.add_argument(
        "--genesis", type=Path, default=None, help="check the key is this genesis's officer's"
    )
    sign.set_defaults(handler=cmd_sign)

    submit = commands.add_parser("submit", help="send an approved action (the central bank)")
    submit.add_argument("action_file", type=Path, metavar="ACTION_FILE")
    add_api_options(submit)
    submit.add_argument("--wait", action="store_true", help="wait until final or refused")
    submit.set_defaults(handler=cmd_submit)

    show = commands.add_parser("show", help="participants, validators per height, frozen accounts")
    add_api_options(show)
    show.set_defaults(handler=cmd_show)
