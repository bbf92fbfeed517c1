"""The bank API: JSON over HTTP, every request signed by its caller (node/api_auth.py).

The routes, their answers and errors are described in node/openapi.json (OpenAPI 3.1,
served at GET /v1/openapi.json).
Errors are JSON objects `{"code": ..., "message": ...}` with a stable
code: a transaction refusal carries its RefusalCode name as it is.

    POST /v1/transactions           body: raw tx bytes (application/octet-stream),
                                    or JSON {"tx": "<hex>"}; 202 once kept in the store
    POST /v1/transactions/batch     body: a msgpack array of tx byte strings
                                    (application/msgpack), or JSON {"txs": ["<hex>", ...]};
                                    200 {"results": [...]}, one per item, in order, once
                                    every admitted one is kept (one store write for all)
    GET  /v1/transactions/{hash}    ?wait_ms=N waits up to N ms for a final answer
    GET  /v1/accounts/{id}          balance in tyiyn
    GET  /v1/transactions/{hash}/proof  its inclusion proof once final (node/inclusion.py)
    GET  /v1/accounts/{id}/proof    the balance with its Merkle proof up to the app hash
    GET  /v1/accounts/{id}/transactions  ?from_height=H1&to_height=H2&limit=N: its
                                    statement, ascending, with running balances and the
                                    remittances this node may open (node/statement.py)
    GET  /v1/blocks/{height_or_hash}  header, transaction hashes, certificate signers;
                                    by decimal height or 64-hex block hash
    GET  /v1/validators             the validator set in force, with voting powers
    GET  /v1/governance             participants (role, suspended, key), the validator
                                    sets in force now and scheduled, frozen accounts,
                                    the officers and their threshold (issue 13)
    GET  /v1/events                 ?from_height=H: server-sent events, one per finalized
                                    block (node/events.py)
    GET  /v1/status                 height, hashes, role, validating, peers, caught_up
    GET  /v1/evidence               ?from_height=H: proofs of equivocation, seen or on chain
    GET  /v1/anchors                anchoring summary (lag in blocks, last error) and the
                                    newest anchors; 404 NOT_ANCHORING on other nodes
    GET  /v1/anchors/{height}       one anchor: pending, included or finalized, with the
                                    EVM transaction hash and block
    GET  /v1/openapi.json           the OpenAPI 3.1 document of these routes

Bodies are raw bytes (application/octet-stream, also when no Content-Type is given) or
JSON (application/json), a batch msgpack (application/msgpack) or JSON; any other type is
415 UNSUPPORTED_MEDIA_TYPE. Every failure,
down to an unparsable request, an unknown route or our own bug, is a JSON error; the
connection limits and deadlines in front of the routes are node.api_server's.

A transaction's status is one of: pending (kept, waiting for a block), final (applied),
refused (its block recorded a refusal code, or another transaction consumed its UETR),
expired (never settled and never will: safe to send again with a new UETR).
While the node is catching up with the network it answers CATCHING_UP (503) where it
cannot judge: a new submission, or a transaction it does not know.

Who reads what (403 FORBIDDEN otherwise): a participant reads its own accounts (their
balance, proof and statement) and the transactions it is a party of (it signed it, or it
owns an account the transaction debits or credits); the central bank (issuer) and the
configured supervisors read everything. A transaction this node kept but dropped unsettled
(expired, or another consumed its UETR) no longer has its parties at hand: its status is
for the node's own participant and the readers of everything. Block headers, certificates,
validators, evidence, anchors and node status are for every participant, and so are the
governance participants and validator sets; frozen accounts are shown as accounts are (a
bank sees only its own, the readers of everything see all); a block's
transaction list shows a participant only the hashes of its own transactions (and its
count of all). Submitting is open to every participant: a transaction is authorised by its
own signature, never by the request's.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from aiohttp import web

from consensus.wire import decode_certificate, decode_evidence
from node.anchor import decode_record, record_json
from node.api_auth import Authenticator, AuthLimits, Caller, caller_of
from node.api_context import ApiContext, reads_account, reads_tx
from node.api_server import (
    API_GUARD,
    ECHO_CHARS_MAX,
    ApiGuard,
    ApiLimits,
    bounded,
    describe,
)
from node.api_server import json_error as error
from node.block import decode_block
from node.errors import NodeError, RefusalCode, TxRefused
from node.events import EventReader, start_height, stream_events
from node.inclusion import proof_answer
from node.ledger import decode_tx_result
from node.mempool import decode_dropped
from node.statement import STATEMENT_LIMIT_DEFAULT, STATEMENT_LIMIT_MAX, Reader, account_statement
from node.store import StoreError
from node.tx import TX_SIZE_MAX, Tx, decode_tx

__all__ = ["ApiContext", "ApiSettings", "build_api"]

log = logging.getLogger(__name__)

WAIT_MS_MAX = 60_000
STATUS_BY_CODE = {
    RefusalCode.MEMPOOL_FULL: 503,
    RefusalCode.CATCHING_UP: 503,
    RefusalCode.DUPLICATE: 409,
}
BODY_TYPES = ("application/octet-stream", "application/json")
BATCH_BODY_TYPES = ("application/msgpack", "application/json")
# The stable code of each HTTP error aiohttp or the guard raises; other 4xx are BAD_REQUEST.
CODE_BY_STATUS = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """The API's limits and readers; node.toml [api] sets each."""

    connections: ApiLimits = field(default_factory=ApiLimits)
    auth: AuthLimits = field(default_factory=AuthLimits)
    body_bytes_max: int = 4 * 1024 * 1024
    batch_txs_max: int = 1_000
    page_items_max: int = STATEMENT_LIMIT_MAX
    supervisor_keys: Mapping[str, bytes] = field(default_factory=dict)


CONTEXT = web.AppKey("context", ApiContext)
SETTINGS = web.AppKey("settings", ApiSettings)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


def forbidden(what: str) -> web.Response:
    return error(403, "FORBIDDEN", f"{what} is not yours to read")


def settled_tx(context: ApiContext, height: int, index: int) -> Tx:
    block_bytes = context.driver.store.load_block(height)
    assert block_bytes is not None  # a stored result points at a stored block
    return decode_tx(decode_block(block_bytes).txs[index], context.driver.ledger.chain_id)


def reads_status(context: ApiContext, caller: Caller, tx_hash: bytes, body: dict[str, Any]) -> bool:
    """Whether the caller may see this status of the transaction (module docstring)."""
    if caller.reads_all or body["status"] == "unknown":
        return True
    if body["status"] == "pending":
        tx = context.driver.mempool.get(tx_hash)
        return tx is None or reads_tx(context, caller, tx)  # None: it settled just now
    if "index" in body:
        return reads_tx(context, caller, settled_tx(context, body["height"], body["index"]))
    return caller.participant_id == context.driver.node_id  # dropped: kept by this node


async def read_tx(request: web.Request) -> bytes:
    """The transaction bytes of a submission: the raw body, or the hex in a JSON body.

    Raises:
        web.HTTPUnsupportedMediaType: neither raw bytes nor JSON.
        TxRefused: MALFORMED, for JSON that is not {"tx": "<hex>"} (nested without end,
            not UTF-8, not an object, ...).
    """
    if request.content_type not in BODY_TYPES:
        expected = " or ".join(BODY_TYPES)
        message = f"expected {expected}, got {bounded(request.content_type)}"
        raise web.HTTPUnsupportedMediaType(text=message)
    body = await request.read()
    if request.content_type == "application/json":
        try:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise TypeError("the document must be an object")
            hex_tx = document["tx"]
            if not isinstance(hex_tx, str):
                raise TypeError("tx must be a hex string")
            return bytes.fromhex(hex_tx)
        # RecursionError: the decoder's own bound on nesting ([[[[...]]]]), not a crash.
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            message = f'expected {{"tx": "<hex>"}}: {bounded(exc)}'
            raise TxRefused(RefusalCode.MALFORMED, message) from exc
    return body


async def submit_transaction(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        tx_bytes = await read_tx(request)
        tx_hash = await context.intake.submit(tx_bytes)
    except TxRefused as exc:
        status = STATUS_BY_CODE.get(exc.code, 400)
        return error(status, exc.code.name, exc.message)
    body = transaction_status(context, tx_hash)
    assert body["status"] != "unknown"  # kept, settled or dropped: the store knows it
    return web.json_response(body, status=202 if body["status"] == "pending" else 200)


class BatchRefused(Exception):
    """A batch body refused as a whole, before any of its items is looked at."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def read_batch(request: web.Request) -> list[bytes]:
    """The transactions of a batch: a msgpack array of byte strings, or JSON {"txs": [hex]}.

    Raises:
        web.HTTPUnsupportedMediaType: neither msgpack nor JSON.
        BatchRefused: 400 MALFORMED (not the documented shape), 413 TOO_MANY_ITEMS.
    """
    if request.content_type not in BATCH_BODY_TYPES:
        expected = " or ".join(BATCH_BODY_TYPES)
        message = f"expected {expected}, got {bounded(request.content_type)}"
        raise web.HTTPUnsupportedMediaType(text=message)
    body = await request.read()
    items_max = request.app[SETTINGS].batch_txs_max
    try:
        if request.content_type == "application/json":
            return batch_of_json(body, items_max)
        return batch_of_msgpack(body, items_max)
    # RecursionError: the JSON decoder's own bound on nesting; the msgpack errors are
    # ValueError (bounds, formats, extra data) or UnpackException (truncated).
    except (ValueError, TypeError, KeyError, RecursionError, msgpack.UnpackException) as exc:
        raise BatchRefused(400, "MALFORMED", f"not a batch: {bounded(exc)}") from exc


def too_many_items(count: int, items_max: int) -> BatchRefused:
    return BatchRefused(413, "TOO_MANY_ITEMS", f"{count} items; a batch holds 0..{items_max}")


def batch_of_msgpack(body: bytes, items_max: int) -> list[bytes]:
    """The array's byte strings; no other type is accepted, the array's length is
    checked before any item is decoded, and each item is at most TX_SIZE_MAX bytes."""
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_buffer_size=max(len(body), 1),
        max_array_len=items_max + 1,
        max_bin_len=TX_SIZE_MAX,
        max_str_len=0,
        max_map_len=0,
        max_ext_len=0,
    )
    unpacker.feed(body)
    count = unpacker.read_array_header()  # ValueError unless an array comes first
    if count > items_max:
        raise too_many_items(count, items_max)
    txs = [unpacker.unpack() for _ in range(count)]
    if unpacker.tell() != len(body):
        raise ValueError("extra bytes after the array")
    if not all(type(tx) is bytes for tx in txs):
        raise TypeError("every item must be a byte string (msgpack bin)")
    return txs


def batch_of_json(body: bytes, items_max: int) -> list[bytes]:
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("txs"), list):
        raise TypeError('expected {"txs": ["<hex>", ...]}')
    hex_txs = document["txs"]
    if len(hex_txs) > items_max:
        raise too_many_items(len(hex_txs), items_max)
    if not all(isinstance(hex_tx, str) for hex_tx in hex_txs):
        raise TypeError("every item must be a hex string")
    return [bytes.fromhex(hex_tx) for hex_tx in hex_txs]


async def submit_batch(request: web.Request) -> web.Response:
    """Every item through the intake, as one submission each, kept in one store write."""
    context = request.app[CONTEXT]
    try:
        txs = await read_batch(request)
    except BatchRefused as exc:
        return error(exc.status, exc.code, str(exc))
    if not context.driver.caught_up():
        message = "this node is catching up with the network; retry shortly or use another node"
        return error(503, RefusalCode.CATCHING_UP.name, message)
    results = await context.intake.submit_many(txs)
    return web.json_response(
        {"results": [batch_result(context, i, r) for i, r in enumerate(results)]}
    )


def batch_result(context: ApiContext, index: int, result: bytes | TxRefused) -> dict[str, Any]:
    """One item's answer: its status as the single submission answers it, or its refusal.
    `index` is the item's place in the batch; where it settled is GET /v1/transactions'."""
    if isinstance(result, TxRefused):
        return {"index": index, "code": result.code.name, "message": result.message}
    status = transaction_status(context, result)
    assert status["status"] != "unknown"  # kept, settled or dropped: the store knows it
    return {"index": index} | {key: v for key, v in status.items() if key != "index"}


def transaction_status(context: ApiContext, tx_hash: bytes) -> dict[str, Any]:
    driver = context.driver
    if tx_hash in driver.mempool:
        return {"tx_hash": tx_hash.hex(), "status": "pending"}
    data = driver.store.load_tx_result(tx_hash)
    if data is None:
        return dropped_status(context, tx_hash)
    result = decode_tx_result(data)
    body: dict[str, Any] = {
        "tx_hash": tx_hash.hex(),
        "height": result.height,
        "index": result.index,
    }
    if result.code is None:
        body["status"] = "final"
    else:
        body |= {"status": "refused", "code": result.code.name}
    return body


def dropped_status(context: ApiContext, tx_hash: bytes) -> dict[str, Any]:
    """The fate of a kept transaction that will never settle, else unknown."""
    data = context.driver.store.load_dropped(tx_hash)
    if data is None:
        return {"tx_hash": tx_hash.hex(), "status": "unknown"}
    dropped = decode_dropped(data)
    body: dict[str, Any] = {"tx_hash": tx_hash.hex(), "height": dropped.height}
    if dropped.code is RefusalCode.EXPIRED:
        return body | {"status": "expired", "code": dropped.code.name}
    assert dropped.first_tx_hash is not None
    return body | {
        "status": "refused",
        "code": dropped.code.name,
        "first_tx_hash": dropped.first_tx_hash.hex(),
    }


async def get_transaction(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    caller = caller_of(request)
    try:
        tx_hash = bytes.fromhex(request.match_info["tx_hash"])
        wait_ms = int(request.query.get("wait_ms", "0"))
    except ValueError:
        return error(400, "MALFORMED", "tx hash must be 64 hex digits; wait_ms an integer")
    if len(tx_hash) != 32 or not 0 <= wait_ms <= WAIT_MS_MAX:
        return error(400, "MALFORMED", f"tx hash must be 32 bytes; wait_ms 0..{WAIT_MS_MAX}")
    body = transaction_status(context, tx_hash)
    if wait_ms and body["status"] in ("pending", "unknown"):
        if not reads_status(context, caller, tx_hash, body):
            return forbidden("this transaction")
        async with request.app[AUTHENTICATOR].wait_slot(caller):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_ms / 1000
            while body["status"] in ("pending", "unknown") and loop.time() < deadline:
                if context.closing:
                    break  # the node stops: answer what it knows now
                await context.settled_once(deadline - loop.time())
                body = transaction_status(context, tx_hash)
    if not reads_status(context, caller, tx_hash, body):
        return forbidden("this transaction")
    if body["status"] == "unknown":
        if not context.driver.caught_up():
            message = "this node is catching up with the network and does not know it yet"
            return error(503, RefusalCode.CATCHING_UP.name, message)
        return error(404, "NOT_FOUND", "no such transaction in the mempool or the chain")
    return web.json_response(body)


async def get_transaction_proof(request: web.Request) -> web.Response:
    """The transaction's inclusion proof once final; node/inclusion.py lists the answers."""
    context = request.app[CONTEXT]
    driver = context.driver
    try:
        tx_hash = bytes.fromhex(request.match_info["tx_hash"])
    except ValueError:
        tx_hash = b""  # proof_answer names the fault
    if len(tx_hash) == 32:
        body = transaction_status(context, tx_hash)
        if not reads_status(context, caller_of(request), tx_hash, body):
            return forbidden("this transaction")
    answer = proof_answer(
        driver.store,
        driver.ledger.chain_id,
        request.match_info["tx_hash"],
        in_mempool=driver.mempool.__contains__,
        caught_up=driver.caught_up,
    )
    return web.json_response(answer.body, status=answer.status)


async def get_account(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    account = request.match_info["account"]
    balance = context.driver.ledger.balances.get(account)
    if balance is None:
        return error(404, RefusalCode.UNKNOWN_ACCOUNT.name, f"no account {account!r}")
    if not reads_account(context, caller_of(request), account):
        return forbidden(f"account {account}")
    return web.json_response({"account": account, "balance": balance})


async def get_account_proof(request: web.Request) -> web.Response:
    """The account's balance after the last block, with what recomputes the app hash that
    block `height + 1` will carry (node.ledger.verify_account_state checks it)."""
    context = request.app[CONTEXT]
    account = request.match_info["account"]
    ledger = context.driver.ledger
    if account not in ledger.balances:
        return error(404, RefusalCode.UNKNOWN_ACCOUNT.name, f"no account {account!r}")
    if not reads_account(context, caller_of(request), account):
        return forbidden(f"account {account}")
    proof = ledger.account_proof(account)
    return web.json_response(
        {
            "account": account,
            "balance": proof.account.balance,
            "height": proof.height,
            "leaf_index": proof.account.index,
            "leaf_count": proof.account.size,
            "path": [node.hex() for node in proof.account.path],
            "accounts_root": proof.accounts_root.hex(),
            "reference_count": proof.reference_count,
            "issued_total": proof.issued_total,
            "redeemed_total": proof.redeemed_total,
            "governance_hash": proof.governance_hash.hex(),
            "previous_app_hash": proof.previous_app_hash.hex(),
            "changes_hash": proof.changes_hash.hex(),
            "app_hash": proof.app_hash.hex(),
        }
    )


async def get_account_transactions(request: web.Request) -> web.Response:
    """The account's statement of a height range, one page (node/statement.py):
    ?from_height=H1 (default 1) &to_height=H2 (default the settled height) &limit=N
    (1..[api] page_items_max, default 100) &from_index=I (a previous page's
    next_from_index, default 0). 1 <= H1 and H2 >= 0, else MALFORMED; a range reaching
    past the settled height is read up to it, so a client polling for new entries from
    the height after its last page gets an empty page, not an error."""
    context = request.app[CONTEXT]
    account = request.match_info["account"]
    ledger = context.driver.ledger
    settled_height = ledger.height
    limit_max = request.app[SETTINGS].page_items_max
    query = request.query
    try:
        limit = int(query.get("limit", str(STATEMENT_LIMIT_DEFAULT)))
        from_height = int(query.get("from_height", "1"))
        to_height = int(query.get("to_height", str(settled_height)))
        from_index = int(query.get("from_index", "0"))
    except ValueError:
        return error(400, "MALFORMED", "limit, from_height, to_height, from_index: integers")
    if not 1 <= limit <= limit_max:
        return error(400, "MALFORMED", f"limit must be an integer of 1..{limit_max}")
    if not (1 <= from_height < 2**63 and 0 <= to_height < 2**63):
        return error(400, "MALFORMED", "expected 1 <= from_height and 0 <= to_height")
    to_height = min(to_height, settled_height)
    index_max = 2**32 - 1  # a tx index as the store's keys hold it (4 bytes)
    if not 0 <= from_index <= index_max:
        return error(400, "MALFORMED", f"from_index must be an integer of 0..{index_max}")
    if account not in ledger.balances:
        return error(404, RefusalCode.UNKNOWN_ACCOUNT.name, f"no account {account!r}")
    if not reads_account(context, caller_of(request), account):
        return forbidden(f"account {account}")
    if from_height > to_height:
        empty = {"from_height": from_height, "to_height": to_height, "transactions": []}
        cursor = {"next_from_height": None, "next_from_index": None}
        return web.json_response({"account": account, **empty, **cursor})
    reader = Reader(participant_id=context.driver.node_id, signing_key=context.remittance_key)
    statement = account_statement(
        context.driver.store,
        ledger.chain_id,
        account,
        from_height=from_height,
        from_index=from_index,
        to_height=to_height,
        limit=limit,
        reader=reader,
    )
    return web.json_response(statement)


HEIGHT_PATTERN = re.compile(r"[0-9]{1,19}")  # decimal, below 10**19; no sign, no spaces
BLOCK_HASH_PATTERN = re.compile(r"[0-9a-fA-F]{64}")


def block_height_of(context: ApiContext, height_or_hash: str) -> int | None:
    """The height a route's `{height_or_hash}` names (0 if no block has that hash), or
    None if it is neither. 64 characters are a hash: no height has that many digits."""
    if BLOCK_HASH_PATTERN.fullmatch(height_or_hash):
        return context.driver.store.load_height_of(bytes.fromhex(height_or_hash)) or 0
    if HEIGHT_PATTERN.fullmatch(height_or_hash):
        return int(height_or_hash)
    return None


async def get_block(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    height_or_hash = request.match_info["height_or_hash"]
    height = block_height_of(context, height_or_hash)
    if height is None:
        return error(400, "MALFORMED", "expected a decimal height or a 64-hex block hash")
    store = context.driver.store
    known = 1 <= height <= context.driver.ledger.height
    block_bytes = store.load_block(height) if known else None
    certificate_bytes = store.load_certificate(height) if known else None
    if block_bytes is None or certificate_bytes is None:
        return error(404, "NOT_FOUND", f"no block {bounded(height_or_hash)}")
    block = decode_block(block_bytes)
    certificate = decode_certificate(certificate_bytes)
    header = block.header
    caller = caller_of(request)
    txs = [decode_tx(tx, header.chain_id) for tx in block.txs]
    return web.json_response(
        {
            "height": header.height,
            "block_hash": header.hash().hex(),
            "time_ms": header.time_ms,
            "prev_block_hash": header.prev_block_hash.hex(),
            "app_hash": header.app_hash.hex(),
            "tx_root": header.tx_root.hex(),
            "proposer": header.proposer,
            "tx_count": len(txs),
            # Only the caller's own transactions (all of them for readers of everything).
            "tx_hashes": [tx.tx_hash.hex() for tx in txs if reads_tx(context, caller, tx)],
            "certificate": {
                "round": certificate.round,
                "signers": [vote.voter for vote in certificate.precommits],
                "encoded": certificate_bytes.hex(),  # for checks with the validator set
            },
        }
    )


async def get_validators(request: web.Request) -> web.Response:
    """The validator set in force at the next height (governance changes it; GET
    /v1/governance lists the schedule), with each one's name."""
    ledger = request.app[CONTEXT].driver.ledger
    names = {pid: p.name for pid, p in ledger.participants.items()}
    validator_set = ledger.validators_at(ledger.height + 1)
    validators = [
        {
            "id": v.validator_id,
            "name": names[v.validator_id],
            "public_key": v.public_key.hex(),
            "voting_power": v.voting_power,
        }
        for v in validator_set.validators
    ]
    return web.json_response(
        {
            "height": ledger.height,
            "total_voting_power": validator_set.total_power,
            "validators": validators,
        }
    )


async def get_governance(request: web.Request) -> web.Response:
    """The governance state after the last settled block (node/governance.py): who takes
    part, under which key, which validator sets are in force from which height (the one in
    force now and any change already decided), which accounts are frozen, and who approves
    governance actions. A frozen account is read as an account is: a bank sees its own."""
    context = request.app[CONTEXT]
    caller = caller_of(request)
    ledger = context.driver.ledger
    state = ledger.governance
    now = max(ledger.height, 1)
    # The set in force now and every later one; older entries no longer matter.
    first = 0
    for index, (from_height, _) in enumerate(state.schedule):
        if from_height <= now:
            first = index
    validators = [
        {
            "from_height": from_height,
            "validators": [
                {"id": v.validator_id, "voting_power": v.voting_power} for v in s.validators
            ],
        }
        for from_height, s in state.schedule[first:]
    ]
    participants = [
        {
            "id": p.participant_id,
            "name": p.name,
            "role": p.role,
            "suspended": p.suspended,
            "public_key": p.public_key.hex(),
        }
        for p in state.participants
    ]
    frozen = [a for a in state.frozen if reads_account(context, caller, a)]
    return web.json_response(
        {
            "height": ledger.height,
            "officer_threshold": ledger.officer_threshold,
            "officers": sorted(ledger.officers),
            "participants": participants,
            "validators": validators,
            "frozen_accounts": frozen,
        }
    )


async def get_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events, one per finalized block (node/events.py); one wait slot."""
    context = request.app[CONTEXT]
    caller = caller_of(request)
    try:
        first = start_height(
            request.query.get("from_height"),
            request.headers.get("Last-Event-ID"),
            context.driver.ledger.height,
        )
    except ValueError as exc:
        return error(400, "MALFORMED", str(exc))
    reader = EventReader(
        reads_tx=lambda tx: reads_tx(context, caller, tx),
        reads_account=lambda account: reads_account(context, caller, account),
    )
    async with request.app[AUTHENTICATOR].wait_slot(caller):
        return await stream_events(request, context, reader, first)


EVIDENCE_PAGE_MAX = 100


async def get_evidence(request: web.Request) -> web.Response:
    """Proofs that a validator signed two conflicting votes: both signed votes, which
    anyone holding the validator set can check (consensus.crypto.verify_evidence). Those
    this node saw and those settled on chain; a settled one says where (`on_chain`)."""
    context = request.app[CONTEXT]
    try:
        from_height = int(request.query.get("from_height", "0"))
    except ValueError:
        return error(400, "MALFORMED", "from_height must be an integer")
    if not 0 <= from_height < 2**63:
        return error(400, "MALFORMED", "from_height must be in 0..2**63-1")
    items = []
    store = context.driver.store
    for data in store.load_evidence(from_height, EVIDENCE_PAGE_MAX):
        evidence = decode_evidence(data)
        item: dict[str, object] = {
            "height": evidence.first.height,
            "round": evidence.first.round,
            "type": evidence.first.vote_type.name,
            "validator": evidence.first.voter,
            "evidence": data.hex(),
        }
        on_chain = store.load_evidence_on_chain(evidence.first.height, evidence.first.voter)
        if on_chain is not None:
            block_height, tx_hash = on_chain
            item["on_chain"] = {"height": block_height, "tx_hash": tx_hash.hex()}
        items.append(item)
    return web.json_response({"evidence": items})


async def get_status(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    driver = context.driver
    ledger = driver.ledger
    return web.json_response(
        {
            "node_id": driver.node_id,
            "chain_id": ledger.chain_id,
            "role": ledger.role_of(driver.node_id),  # the ledger's: governance changes it
            "validating": ledger.validates(driver.node_id),
            "height": ledger.height,
            "caught_up": driver.caught_up(),
            "peer_height_max": max(driver.peer_heights.values(), default=0),
            "last_block_hash": ledger.block_hash.hex(),
            "app_hash": ledger.app_hash.hex(),
            "peers": context.connected_peers(),
            "mempool_size": len(driver.mempool),
            "counters": dict(driver.counters),
            "api": request.app[API_GUARD].counters(),
        }
    )


ANCHOR_PAGE_MAX = 100
NOT_ANCHORING = "this node does not anchor (anchor.enabled = false)"


async def get_anchors(request: web.Request) -> web.Response:
    anchorer = request.app[CONTEXT].anchorer
    if anchorer is None:
        return error(404, "NOT_ANCHORING", NOT_ANCHORING)
    anchors = [record_json(r) for r in anchorer.records(ANCHOR_PAGE_MAX)]
    return web.json_response(anchorer.summary() | {"anchors": anchors})


async def get_anchor(request: web.Request) -> web.Response:
    anchorer = request.app[CONTEXT].anchorer
    if anchorer is None:
        return error(404, "NOT_ANCHORING", NOT_ANCHORING)
    try:
        height = int(request.match_info["height"])
    except ValueError:
        return error(400, "MALFORMED", "height must be an integer")
    if not 1 <= height < 2**63:
        return error(400, "MALFORMED", "height must be in 1..2**63-1")
    data = anchorer.store.load_anchor(height)
    if data is None:
        return error(404, "NOT_FOUND", f"no anchor at height {height}")
    return web.json_response(record_json(decode_record(data)))


OPENAPI = web.AppKey("openapi", bytes)


def openapi_document() -> bytes:
    """node/openapi.json as installed with the package (the wheel carries it)."""
    return importlib.resources.files("node").joinpath("openapi.json").read_bytes()


async def get_openapi(request: web.Request) -> web.Response:
    """The contract, signed like every route: it names no secret, but one rule for every
    route is simpler to check than an exception (tests/unit/test_openapi.py keeps it true)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error leaves as JSON with a stable code: 404s, bad methods, refused bodies,
    and our own bugs (500 INTERNAL, one bounded log line, no traceback on the wire)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = CODE_BY_STATUS.get(exc.status, "BAD_REQUEST" if exc.status < 500 else "INTERNAL")
        text = (exc.text or "").removeprefix(f"{exc.status}: ") or exc.reason
        response = error(exc.status, code, text)
        if "Allow" in exc.headers:  # RFC 9110: a 405 names the methods the route has
            response.headers["Allow"] = exc.headers["Allow"]
        if exc.status == 408:  # a slow client: do not wait for its next request
            response.force_close()
        return response
    except StoreError as exc:
        # Stored bytes are not what was written, or the disk fails: the node stops with
        # its fatal status (node/main.py) rather than answer from it.
        request.app[CONTEXT].on_store_failure(exc)
        return error(503, "STORE_FAILED", "this node found its store failing and is stopping")
    except NodeError as exc:
        log.error("api %s %s: %s", request.method, bounded(request.path), describe(exc))
        return error(500, "NODE_ERROR", str(exc)[:ECHO_CHARS_MAX])
    except Exception as exc:  # our own bug; CancelledError is no Exception and goes on
        log.error("api %s %s failed: %s", request.method, bounded(request.path), describe(exc))
        return error(500, "INTERNAL", "internal error; the node logged it")


def build_api(context: ApiContext, settings: ApiSettings | None = None) -> web.Application:
    """The API application; serve it through node.api_server.ApiSite for the limits."""
    settings = settings or ApiSettings()
    assert settings.body_bytes_max >= TX_SIZE_MAX * 2 + 1024
    guard = ApiGuard(settings.connections)
    ledger = context.driver.ledger
    supervisors = dict(settings.supervisor_keys)

    def key_of(caller_id: str) -> bytes | None:
        """The caller's key in the ledger now (governance admits and rotates while the
        node runs), or a supervisor's. node/main.py refuses a supervisor id naming a
        genesis participant; one admitted since authenticates neither way, so that the
        supervisor key never signs as the participant."""
        participant_key = ledger.public_key_of(caller_id)
        supervisor_key = supervisors.get(caller_id)
        if participant_key is not None and supervisor_key is not None:
            return None
        return participant_key if participant_key is not None else supervisor_key

    readers_of_all = [ledger.genesis.issuer.participant_id, *supervisors]
    authenticator = Authenticator(key_of, readers_of_all, settings.auth)
    # json_errors is outermost, so that what the guard raises (408, 413) leaves as JSON;
    # the guard's deadlines bound the body that the authenticator reads.
    middlewares = [json_errors, guard.middleware(), authenticator.middleware()]
    app = web.Application(client_max_size=settings.body_bytes_max, middlewares=middlewares)
    app[CONTEXT] = context
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = authenticator
    app[API_GUARD] = guard
    app[OPENAPI] = openapi_document()

    async def close_context(app: web.Application) -> None:
        context.close()  # before the server waits for its handlers: streams end now

    app.on_shutdown.append(close_context)
    app.router.add_post("/v1/transactions", submit_transaction)
    app.router.add_post("/v1/transactions/batch", submit_batch)
    app.router.add_get("/v1/transactions/{tx_hash}", get_transaction)
    app.router.add_get("/v1/transactions/{tx_hash}/proof", get_transaction_proof)
    app.router.add_get("/v1/accounts/{account}", get_account)
    app.router.add_get("/v1/accounts/{account}/proof", get_account_proof)
    app.router.add_get("/v1/accounts/{account}/transactions", get_account_transactions)
    app.router.add_get("/v1/blocks/{height_or_hash}", get_block)
    app.router.add_get("/v1/validators", get_validators)
    app.router.add_get("/v1/governance", get_governance)
    app.router.add_get("/v1/events", get_events)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/evidence", get_evidence)
    app.router.add_get("/v1/anchors", get_anchors)
    app.router.add_get("/v1/anchors/{height}", get_anchor)
    app.router.add_get("/v1/openapi.json", get_openapi)
    return app
