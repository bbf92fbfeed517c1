"""The API's contract, route by route, against a live node: each status code a route can
answer (node/openapi.json), the error object {code, message}, every request refusal of
the signature, and every refusal code of the ledger a submission can reach, each produced
with a real signed transaction.

One network for the module: the one validator (the central bank's node, which makes its
own blocks) runs; the two banks' nodes do not, since their keys and accounts are in
genesis and they only sign here. Requests go through http.client with the headers of the
project's client (ApiClient.signed_headers), so that a test can leave them out, spoil them
or send them twice.

Not produced here: 503 CATCHING_UP and MEMPOOL_FULL (a lone validator is never behind and
its pool is large; tests/unit/test_mempool.py and test_intake_api.py cover them) and 408
(tests/integration/test_api_hostile.py).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from nacl.signing import SigningKey

from cli.api_client import ApiClient, Credentials
from node.api import openapi_document
from node.ledger import EXPIRY_HEIGHTS_MAX
from node.tx import TAG_PAYOUT, TAG_TRANSFER, sign_issue, sign_transfer
from tests.integration.network import Network, dump_logs

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("network")]

NODE = "nbkr"
BANK_A = "bank-1"
BANK_B = "bank-2"
DOCUMENT: dict[str, Any] = json.loads(openapi_document())
ERROR_CODES = set(DOCUMENT["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
ZERO_HASH = "00" * 32


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = Network.create(tmp_path_factory.mktemp("contract"), validators=1, banks=2)
    net.start(NODE)
    try:
        net.wait_height([NODE], 2)
        yield net
    finally:
        codes = net.stop_all()
        assert all(code == 0 for code in codes.values()), (codes, dump_logs(net))
        assert "Traceback" not in net.log(NODE), dump_logs(net)


# -- requests ----------------------------------------------------------------------------


def raw(
    network: Network, method: str, target: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    """One request as given; the status, headers and JSON body of the answer."""
    host, _, port = network.api(NODE).removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data)
    finally:
        connection.close()


def signed(
    network: Network,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    content_type: str | None = None,
    participant: str = NODE,
) -> dict[str, str]:
    headers = network.client(NODE, as_participant=participant).signed_headers(method, target, body)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def send(
    network: Network,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    content_type: str | None = None,
    participant: str = NODE,
) -> tuple[int, Any]:
    """One request signed by `participant` (default: the central bank, which reads all)."""
    headers = signed(
        network, method, target, body=body, content_type=content_type, participant=participant
    )
    status, _, document = raw(network, method, target, body, headers)
    return status, document


def assert_error(answer: tuple[int, Any], status: int, code: str) -> None:
    """The answer is the error object of the document with this status and code."""
    assert answer[0] == status and isinstance(answer[1], dict), answer
    assert set(answer[1]) == {"code", "message"}, answer
    assert answer[1]["code"] == code and answer[1]["message"], answer
    assert code in ERROR_CODES, f"{code} is not among the document's error codes"


# -- transactions --------------------------------------------------------------------------


def key_of(network: Network, participant: str) -> SigningKey:
    return network.credentials(participant).signing_key


def transfer(
    network: Network,
    sender: str,
    to: str,
    amount: int,
    *,
    from_account: str | None = None,
    key: SigningKey | None = None,
    expiry_height: int | None = None,
    chain_id: str | None = None,
    uetr: bytes | None = None,
) -> bytes:
    """A transfer without remittance, signed with `sender`'s key unless `key` is given."""
    return sign_transfer(
        key or key_of(network, sender),
        chain_id or network.genesis.chain_id,
        signer=sender,
        uetr=uetr or uuid.uuid4().bytes,
        expiry_height=expiry_height or network.height(NODE) + 100,
        from_account=from_account or sender,
        to_account=to,
        amount=amount,
    )


def unchecked(network: Network, signer: str, fields: list[object]) -> bytes:
    """Signed bytes that node.tx's signing helpers refuse to make (they decode what they
    sign): the way a bank's own faulty software could make them."""
    message = msgpack.packb(fields, use_bin_type=True)
    return bytes(key_of(network, signer).sign(message))


def accepted(answer: tuple[int, Any]) -> str:
    """The hash of an accepted submission: 202 pending, or 200 with its result when the
    node settled it before answering (a lone validator makes blocks that fast)."""
    status, document = answer
    assert (status, document["status"]) == (202, "pending") or (
        status == 200 and document["status"] in ("final", "refused")
    ), answer
    return str(document["tx_hash"])


def submit(network: Network, tx: bytes, participant: str = NODE) -> tuple[int, Any]:
    return send(
        network,
        "POST",
        "/v1/transactions",
        body=tx,
        content_type="application/octet-stream",
        participant=participant,
    )


def balances(network: Network) -> dict[str, int]:
    return {a.account_id: network.balance(NODE, a.account_id) for a in network.genesis.accounts}


def settled(network: Network, tx_hash: str) -> dict[str, Any]:
    return network.wait_final(NODE, tx_hash)


# -- the signature: 401 on every route -------------------------------------------------------


def targets(network: Network) -> list[tuple[str, str, bytes, str | None]]:
    """(method, target, body, content type) of one request to each documented route."""
    concrete = {
        "{tx_hash}": ZERO_HASH,
        "{account}": BANK_A,
        "{height_or_hash}": "1",
        "{height}": "1",
    }
    out = []
    for path, item in DOCUMENT["paths"].items():
        for method in item:
            target = path
            for name, value in concrete.items():
                target = target.replace(name, value)
            if method == "post":
                out.append(("POST", target, b"\x00", "application/octet-stream"))
            else:
                out.append(("GET", target, b"", None))
    return out


def test_every_route_refuses_an_unsigned_a_wrong_a_stale_and_a_replayed_request(
    network: Network,
) -> None:
    key_a = key_of(network, BANK_A)
    impostor = ApiClient(network.api(NODE), Credentials(BANK_B, key_a))  # bank-2, a's key
    for method, target, body, content_type in targets(network):
        extra = {} if content_type is None else {"Content-Type": content_type}

        status, _, document = raw(network, method, target, body, extra)
        assert_error((status, document), 401, "SIGNATURE_MISSING")

        wrong = impostor.signed_headers(method, target, body) | extra
        status, _, document = raw(network, method, target, body, wrong)
        assert_error((status, document), 401, "SIGNATURE_INVALID")

        stale_client = network.client(NODE)
        stale = stale_client.signed_headers(method, target, body, created=int(time.time()) - 3600)
        status, _, document = raw(network, method, target, body, stale | extra)
        assert_error((status, document), 401, "SIGNATURE_STALE")

        once = signed(network, method, target, body=body, content_type=content_type)
        if target != "/v1/events":  # a stream answers its first request and stays open
            first = raw(network, method, target, body, once)
            assert first[0] != 401, (method, target, first)
            status, _, document = raw(network, method, target, body, once)
            assert_error((status, document), 401, "SIGNATURE_REPLAYED")

        # The signature covers the target: the same headers on another query are invalid.
        moved = signed(network, method, target, body=body, content_type=content_type)
        status, _, document = raw(network, method, target + "?x=1", body, moved)
        assert_error((status, document), 401, "SIGNATURE_INVALID")


def test_too_many_long_polls_get_429_too_many_waits(network: Network) -> None:
    waits_max = 16  # node.api_auth.AuthLimits.waits_max, the default

    async def poll_all() -> list[int]:
        async with network.client(NODE, as_participant=BANK_B) as api:

            async def poll() -> int:
                query = {"wait_ms": 3000}
                response = await api.request("GET", f"/v1/transactions/{ZERO_HASH}", query=query)
                async with response:
                    document = await response.json()
                    if response.status == 429:
                        assert document["code"] == "TOO_MANY_WAITS", document
                        assert response.headers["Retry-After"] == "1"
                    return response.status

            return await asyncio.gather(*(poll() for _ in range(waits_max + 4)))

    statuses = asyncio.run(poll_all())
    assert statuses.count(429) == 4, statuses
    assert statuses.count(404) == waits_max, statuses  # waited, then not found


# -- submissions ---------------------------------------------------------------------------


def test_a_submission_is_202_pending_then_final_and_the_same_bytes_get_200(
    network: Network,
) -> None:
    before = balances(network)
    tx = transfer(network, BANK_A, BANK_B, 5)
    final = settled(network, accepted(submit(network, tx, participant=BANK_A)))
    assert final["status"] == "final" and final["height"] >= 1, final
    status, again = submit(network, tx, participant=BANK_A)
    assert (status, again) == (200, final)
    after = balances(network)
    assert after[BANK_A] == before[BANK_A] - 5 and after[BANK_B] == before[BANK_B] + 5

    json_tx = json.dumps({"tx": transfer(network, BANK_A, BANK_B, 1).hex()}).encode()
    answer = send(
        network, "POST", "/v1/transactions", body=json_tx, content_type="application/json"
    )
    accepted(answer)


def test_what_a_submission_body_cannot_be(network: Network) -> None:
    tx = transfer(network, BANK_A, BANK_B, 1)
    answer = send(network, "POST", "/v1/transactions", body=tx, content_type="text/plain")
    assert_error(answer, 415, "UNSUPPORTED_MEDIA_TYPE")
    answer = send(
        network, "POST", "/v1/transactions", body=b'{"tx": 5}', content_type="application/json"
    )
    assert_error(answer, 400, "MALFORMED")
    too_large = b"\x00" * (4 * 1024 * 1024 + 1)  # api.body_bytes_max + 1
    answer = submit(network, too_large)
    assert_error(answer, 413, "TOO_LARGE")


def refused_at_submission(network: Network) -> list[tuple[str, bytes]]:
    """(code, signed transaction) for every refusal a submission gets at once (400)."""
    chain_id = network.genesis.chain_id
    height = network.height(NODE)
    expiry = height + 100
    key_a = key_of(network, BANK_A)
    valid = transfer(network, BANK_A, BANK_B, 1)
    wrong_recipients = sign_transfer(
        key_a,
        chain_id,
        signer=BANK_A,
        uetr=uuid.uuid4().bytes,
        expiry_height=expiry,
        from_account=BANK_A,
        to_account=BANK_B,
        amount=1,
        remittance="invoice 7",
        recipients=network.genesis.remittance_keys(BANK_A, [BANK_A]),  # not bank-2's
    )
    transfer_fields = [TAG_TRANSFER, chain_id, BANK_A, uuid.uuid4().bytes, expiry]
    payout_fields = [TAG_PAYOUT, chain_id, BANK_A, uuid.uuid4().bytes, expiry, BANK_A]
    return [
        ("MALFORMED", b"\x93junk"),
        ("WRONG_CHAIN", transfer(network, BANK_A, BANK_B, 1, chain_id="som-elsewhere")),
        ("BAD_SIGNATURE", bytes(64) + valid[64:]),
        ("NOT_AUTHORIZED", transfer(network, BANK_A, NODE, 1, from_account=BANK_B)),
        ("NOT_AUTHORIZED", transfer(network, "nobody", BANK_B, 1, from_account=BANK_A, key=key_a)),
        (
            "NOT_AUTHORIZED",
            sign_issue(
                key_a,
                chain_id,
                signer=BANK_A,
                uetr=uuid.uuid4().bytes,
                expiry_height=expiry,
                to_account=BANK_A,
                amount=1,
                reserve_reference="not the issuer",
            ),
        ),
        ("UNKNOWN_ACCOUNT", transfer(network, BANK_A, "no-such-account", 1)),
        ("INVALID_AMOUNT", unchecked(network, BANK_A, [*transfer_fields, BANK_A, BANK_B, 0, ""])),
        ("SELF_TRANSFER", unchecked(network, BANK_A, [*transfer_fields, BANK_A, BANK_A, 1, ""])),
        ("TOO_MANY_LEGS", unchecked(network, BANK_A, [*payout_fields, [], ""])),
        ("EXPIRED", transfer(network, BANK_A, BANK_B, 1, expiry_height=1)),
        (
            "EXPIRY_TOO_FAR",
            transfer(network, BANK_A, BANK_B, 1, expiry_height=height + EXPIRY_HEIGHTS_MAX + 10),
        ),
        ("MISADDRESSED", wrong_recipients),
    ]


def test_every_refusal_at_submission_reaches_the_client_as_400_and_moves_nothing(
    network: Network,
) -> None:
    assert network.height(NODE) >= 2  # EXPIRED: expiry height 1 has passed
    before = balances(network)
    for code, tx in refused_at_submission(network):
        assert_error(submit(network, tx, participant=BANK_A), 400, code)
    assert balances(network) == before


def test_refusals_decided_in_the_block_are_the_status_of_an_accepted_submission(
    network: Network,
) -> None:
    before = balances(network)
    poor = transfer(network, BANK_B, BANK_A, before[BANK_B] + 1)
    result = settled(network, accepted(submit(network, poor, participant=BANK_B)))
    assert (result["status"], result["code"]) == ("refused", "INSUFFICIENT_FUNDS"), result

    too_much = sign_issue(
        key_of(network, NODE),
        network.genesis.chain_id,
        signer=NODE,
        uetr=uuid.uuid4().bytes,
        expiry_height=network.height(NODE) + 100,
        to_account=BANK_A,
        amount=2**63 - 1,  # on top of the banks' funds: beyond the supply limit
        reserve_reference="too much",
    )
    result = settled(network, accepted(submit(network, too_much)))
    assert (result["status"], result["code"]) == ("refused", "SUPPLY_LIMIT"), result
    assert balances(network) == before


def test_a_used_uetr_with_other_content_is_409_duplicate(network: Network) -> None:
    uetr = uuid.uuid4().bytes
    first = transfer(network, BANK_A, BANK_B, 2, uetr=uetr)
    first_hash = accepted(submit(network, first, participant=BANK_A))
    assert_error(submit(network, transfer(network, BANK_A, BANK_B, 3, uetr=uetr)), 409, "DUPLICATE")
    settled(network, first_hash)
    assert_error(submit(network, transfer(network, BANK_A, BANK_B, 4, uetr=uetr)), 409, "DUPLICATE")


def test_no_api_credential_lets_a_bank_debit_an_account_it_does_not_own(
    network: Network,
) -> None:
    """bank-1 signs the request, and the transaction debits bank-2's account, signed with
    bank-1's key: as bank-1, it is not the owner (NOT_AUTHORIZED); claiming to be bank-2,
    the signature is not bank-2's (BAD_SIGNATURE). Alone or in a batch; nothing moves."""
    before = balances(network)
    key_a = key_of(network, BANK_A)
    as_a = transfer(network, BANK_A, BANK_A, 10, from_account=BANK_B)
    assert_error(submit(network, as_a, participant=BANK_A), 400, "NOT_AUTHORIZED")
    as_b = transfer(network, BANK_B, BANK_A, 10, key=key_a)
    assert_error(submit(network, as_b, participant=BANK_A), 400, "BAD_SIGNATURE")
    assert balances(network) == before


def test_nor_does_a_batch(network: Network) -> None:
    """The same two transactions in a batch (planned route, helper "batch")."""
    before = balances(network)
    key_a = key_of(network, BANK_A)
    as_a = transfer(network, BANK_A, BANK_A, 10, from_account=BANK_B)
    as_b = transfer(network, BANK_B, BANK_A, 10, key=key_a)
    batch = msgpack.packb([as_a, as_b], use_bin_type=True)
    status, document = send(
        network,
        "POST",
        "/v1/transactions/batch",
        body=batch,
        content_type="application/msgpack",
        participant=BANK_A,
    )
    assert status == 200, document
    assert [r.get("code") for r in document["results"]] == ["NOT_AUTHORIZED", "BAD_SIGNATURE"]
    assert balances(network) == before


# -- reads -----------------------------------------------------------------------------------


def test_transaction_status_answers(network: Network) -> None:
    tx = transfer(network, BANK_A, BANK_B, 1)
    tx_hash = submit(network, tx, participant=BANK_A)[1]["tx_hash"]
    waited = send(network, "GET", f"/v1/transactions/{tx_hash}?wait_ms=30000")
    assert waited[0] == 200 and waited[1]["status"] == "final", waited
    assert send(network, "GET", f"/v1/transactions/{tx_hash}", participant=BANK_B)[0] == 200
    assert_error(send(network, "GET", f"/v1/transactions/{ZERO_HASH}"), 404, "NOT_FOUND")
    assert_error(send(network, "GET", "/v1/transactions/zz"), 400, "MALFORMED")
    assert_error(
        send(network, "GET", f"/v1/transactions/{tx_hash}?wait_ms=60001"), 400, "MALFORMED"
    )
    own = transfer(network, NODE, BANK_B, 1)  # the central bank's: bank-1 is no party
    own_hash = submit(network, own)[1]["tx_hash"]
    settled(network, own_hash)
    forbidden = send(network, "GET", f"/v1/transactions/{own_hash}", participant=BANK_A)
    assert_error(forbidden, 403, "FORBIDDEN")


@pytest.mark.parametrize("suffix", ["", "/proof"])
def test_account_answers(network: Network, suffix: str) -> None:
    status, document = send(network, "GET", f"/v1/accounts/{BANK_A}{suffix}", participant=BANK_A)
    assert status == 200 and document["account"] == BANK_A, document
    answer = send(network, "GET", f"/v1/accounts/{BANK_B}{suffix}", participant=BANK_A)
    assert_error(answer, 403, "FORBIDDEN")
    assert_error(send(network, "GET", f"/v1/accounts/nobody{suffix}"), 404, "UNKNOWN_ACCOUNT")


def test_block_answers_by_height_and_by_hash(network: Network) -> None:
    status, block = send(network, "GET", "/v1/blocks/1", participant=BANK_A)
    assert status == 200 and block["height"] == 1, block
    assert_error(send(network, "GET", "/v1/blocks/999999999"), 404, "NOT_FOUND")
    assert_error(send(network, "GET", "/v1/blocks/abc"), 400, "MALFORMED")
    # Planned (helper "blocks by hash"): a 64-hex block hash gives the same answer.
    by_hash = send(network, "GET", f"/v1/blocks/{block['block_hash']}", participant=BANK_A)
    assert by_hash == (200, block)
    assert_error(send(network, "GET", f"/v1/blocks/{ZERO_HASH}"), 404, "NOT_FOUND")


def test_status_evidence_anchors_and_the_document(network: Network) -> None:
    status, document = send(network, "GET", "/v1/status", participant=BANK_B)
    assert status == 200 and document["node_id"] == NODE, document
    assert send(network, "GET", "/v1/evidence?from_height=0") == (200, {"evidence": []})
    assert_error(send(network, "GET", "/v1/evidence?from_height=-1"), 400, "MALFORMED")
    assert_error(send(network, "GET", "/v1/anchors"), 404, "NOT_ANCHORING")
    assert_error(send(network, "GET", "/v1/anchors/1"), 404, "NOT_ANCHORING")
    assert send(network, "GET", "/v1/openapi.json", participant=BANK_A) == (200, DOCUMENT)


# -- planned routes (other helpers' branches; they pass once the lead merged them) ----------


def test_a_batch_answers_one_result_per_item_in_order(network: Network) -> None:
    good = transfer(network, BANK_A, BANK_B, 1)
    junk = b"\x93junk"
    body = msgpack.packb([good, junk], use_bin_type=True)
    status, document = send(
        network, "POST", "/v1/transactions/batch", body=body, content_type="application/msgpack"
    )
    assert status == 200, document
    first, second = document["results"]
    # A lone validator may settle it before the answer is written.
    assert first["index"] == 0 and first["status"] in ("pending", "final"), first
    assert (second["index"], second["code"]) == (1, "MALFORMED"), second
    as_json = json.dumps({"txs": [transfer(network, BANK_A, BANK_B, 1).hex()]}).encode()
    status, document = send(
        network, "POST", "/v1/transactions/batch", body=as_json, content_type="application/json"
    )
    assert status == 200 and document["results"][0]["status"] in ("pending", "final"), document

    many = msgpack.packb([junk] * 1001, use_bin_type=True)  # api.batch_txs_max + 1
    answer = send(
        network, "POST", "/v1/transactions/batch", body=many, content_type="application/msgpack"
    )
    assert_error(answer, 413, "TOO_MANY_ITEMS")
    answer = send(
        network, "POST", "/v1/transactions/batch", body=b"\xc1", content_type="application/msgpack"
    )
    assert_error(answer, 400, "MALFORMED")
    answer = send(network, "POST", "/v1/transactions/batch", body=b"[]", content_type="text/plain")
    assert_error(answer, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_a_final_transaction_has_a_proof(network: Network) -> None:
    tx_hash = submit(network, transfer(network, BANK_A, BANK_B, 1), participant=BANK_A)[1][
        "tx_hash"
    ]
    final = settled(network, tx_hash)
    status, proof = send(network, "GET", f"/v1/transactions/{tx_hash}/proof", participant=BANK_A)
    assert status == 200, proof
    assert (proof["tx_hash"], proof["height"], proof["index"]) == (
        tx_hash,
        final["height"],
        final["index"],
    )
    answer = send(network, "GET", f"/v1/transactions/{tx_hash}/proof", participant=BANK_B)
    assert answer[0] == 200  # bank-2 is credited: a party
    assert_error(send(network, "GET", f"/v1/transactions/{ZERO_HASH}/proof"), 404, "NOT_FOUND")


def test_the_statement_is_paged_by_height(network: Network) -> None:
    tx_hash = submit(network, transfer(network, BANK_A, BANK_B, 1), participant=BANK_A)[1][
        "tx_hash"
    ]
    height = settled(network, tx_hash)["height"]
    target = f"/v1/accounts/{BANK_A}/transactions?from_height={height}&to_height={height}&limit=10"
    status, page = send(network, "GET", target, participant=BANK_A)
    assert status == 200, page
    assert (page["account"], page["from_height"], page["to_height"]) == (BANK_A, height, height)
    assert tx_hash in [entry["tx_hash"] for entry in page["transactions"]], page
    entry = next(e for e in page["transactions"] if e["tx_hash"] == tx_hash)
    assert (entry["direction"], entry["amount"], entry["status"]) == ("debit", 1, "final")
    assert "balance_after" in entry, entry
    answer = send(network, "GET", f"/v1/accounts/{BANK_A}/transactions?limit=0")
    assert_error(answer, 400, "MALFORMED")
    answer = send(network, "GET", f"/v1/accounts/{BANK_B}/transactions", participant=BANK_A)
    assert_error(answer, 403, "FORBIDDEN")
    assert_error(send(network, "GET", "/v1/accounts/nobody/transactions"), 404, "UNKNOWN_ACCOUNT")


def test_the_validators(network: Network) -> None:
    status, document = send(network, "GET", "/v1/validators", participant=BANK_A)
    assert status == 200, document
    assert [v["id"] for v in document["validators"]] == [NODE], document
    assert document["total_voting_power"] == 1, document


def test_events_stream_finalized_blocks_from_a_height(network: Network) -> None:
    async def first_events(count: int) -> list[dict[str, Any]]:
        events = []
        async with network.client(NODE, as_participant=BANK_A) as api:
            async for event in api.events(from_height=1):
                events.append(event)
                if len(events) == count:
                    break
        return events

    events = asyncio.run(first_events(2))
    assert [e["height"] for e in events] == [1, 2], events
    assert all({"block_hash", "time_ms", "tx_count", "transactions"} <= set(e) for e in events)
    assert_error(send(network, "GET", "/v1/events?from_height=x"), 400, "MALFORMED")
