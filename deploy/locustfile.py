"""Load-test a somnet node the way a bank would: pre-signed transfers, sent in batches,
with their submit-to-final latency in Locust's own statistics.

Each simulated user signs its transfers before it sends anything (on_start), then sends
them in batches, POST /v1/transactions/batch (a msgpack array of transaction wire bytes),
and waits until the batch is final before sending the next: users x batch size transfers
are in flight. Every request is signed per RFC 9421 with the participant's key, by the
same code as the CLI's (cli/api_client.py). One event stream per Locust process
(GET /v1/events) watches the blocks, and each transfer seen final is reported as a
request of type FINAL, name "transfer", whose response time is the milliseconds from the
start of its batch's POST to the moment its block was seen. A transfer the node refused
(in its batch answer, or in its block) is a failure, and so is one still not final
after --somnet-final-timeout seconds.

Locust is closed-loop: latency is counted from the moment a batch is sent, not from when
a fixed schedule wanted it sent, so a load generator falling behind lowers the load
instead of showing as latency. For figures at a fixed offered rate on one machine use
`somnet bench network`; Locust is for driving a network from the banks' own machines.

Configuration (a command-line option, or its environment variable):
    --host / LOCUST_HOST                          the node's API, e.g. http://10.0.0.5:8080
    --somnet-home / SOMNET_LOCUST_HOME            a bank's node directory: its node.toml
                                                  names the participant, key and genesis
    or --somnet-key-file / SOMNET_LOCUST_KEY_FILE and
       --somnet-participant / SOMNET_LOCUST_PARTICIPANT
    --somnet-from / SOMNET_LOCUST_FROM            the debited account (default: the
                                                  participant's main account, its id)
    --somnet-to / SOMNET_LOCUST_TO                credited accounts, comma-separated, used
                                                  in turn (required)
    --somnet-amount / SOMNET_LOCUST_AMOUNT        tyiyn a transfer (default 1)
    --somnet-batch-size / SOMNET_LOCUST_BATCH_SIZE  transfers a request (default 100; a
                                                  node takes at most api.batch_txs_max)
    --somnet-batches-per-user / SOMNET_LOCUST_BATCHES_PER_USER  signed before the user's
                                                  first request (default 50); a user that
                                                  has sent them all stops, with a warning
    --somnet-final-timeout / SOMNET_LOCUST_FINAL_TIMEOUT  seconds (default 30)
    --somnet-expiry-blocks / SOMNET_LOCUST_EXPIRY_BLOCKS  blocks after the height at sign
                                                  time (default 5000; the ledger allows
                                                  10000)
    --somnet-ca-file / SOMNET_LOCUST_CA_FILE      the CA (or self-signed certificate) of a
                                                  node that speaks HTTPS
    --somnet-remittance / SOMNET_LOCUST_REMITTANCE  a text each transfer carries, sealed to
                                                  the banks that may read it as a bank's
                                                  own are (needs --somnet-home: the genesis
                                                  file has their keys); default: none
Install the somnet package (it brings the signing code) and locust:
`pip install somnet locust`, or `pip install '.[dev]'` in a checkout.

One machine, headless, 20 users of 100 transfers in flight each, for one minute; the
final figures in stats.json (exact), and in CSV files (stats_stats.csv has the POST and
FINAL rows; Locust rewrites them once a second, so the last second may be missing):

    locust -f deploy/locustfile.py --headless -u 20 -r 5 --run-time 60s --stop-timeout 30 \\
        --host http://127.0.0.1:8080 --somnet-home devnet/bank-a --somnet-to bank-b \\
        --json-file stats --csv stats

--stop-timeout lets each user see its last batch final before the run ends, so that every
transfer sent is counted FINAL or failed. Signing happens as each user starts, inside
--run-time, and blocks the process's other users while it runs (gevent is one thread;
it yields between batches): a transfer takes about 30 us to sign, a sealed remittance
about 1 ms more, so size users x batches x batch size (and -r) to the machine.

Several machines: Locust's own distributed mode. The master holds no users and merges the
workers' statistics; each worker runs users, its own event stream, and needs the somnet
package, this file and the key file at the same path (the master forwards its options to
the workers when the run starts). One worker process uses one core; start one a core.
The master quits half a second after --run-time without waiting for the workers'
--stop-timeout, so its figures leave out the batches in flight at the end (at most
users x batch size transfers: POST counts them, FINAL does not); a one-machine run
counts every one.

    # the master (on any machine the workers reach on port 5557)
    locust -f deploy/locustfile.py --master --headless --expect-workers 4 -u 200 -r 10 \\
        --run-time 5m --stop-timeout 30 --host http://node.bank-a:8080 \\
        --somnet-home /etc/somnet/bank-a --somnet-to bank-b,bank-c --csv stats
    # each worker, on each load machine, one a core
    locust -f deploy/locustfile.py --worker --master-host master.example

A node allows one participant 16 open streams and long polls at once (api.waits_max) and
500 requests a second (api.requests_per_s_max): keep the worker processes signing as one
participant at most 16, or raise the node's limits for the test.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import msgpack
import requests
from locust import HttpUser, constant, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner

from cli.api_client import ApiClient, Credentials, EventStreamParser
from node.config import load_config
from node.errors import NodeError
from node.genesis import Genesis, load_genesis
from node.ids import ID_RULE, is_id
from node.keys import load_key_file
from node.ledger import EXPIRY_HEIGHTS_MAX
from node.tx import AMOUNT_MAX, REMITTANCE_CHARS_MAX, decode_tx, sign_transfer

LOG = logging.getLogger("somnet.locust")

FINAL_TYPE = "FINAL"
FINAL_NAME = "transfer"
BATCH_PATH = "/v1/transactions/batch"
STREAM_RETRY_S = 1.0
STREAM_READ_TIMEOUT_S = 45.0  # a node sends a keepalive every 15 s
BATCH_SIZE_MAX = 1000  # a node's default api.batch_txs_max; a smaller one answers 413


@events.init_command_line_parser.add_listener
def add_options(parser: LocustArgumentParser) -> None:
    def option(name: str, env: str, help: str, **kwargs: Any) -> None:
        parser.add_argument(name, env_var=f"SOMNET_LOCUST_{env}", help=help, **kwargs)

    option("--somnet-home", "HOME", "a bank's node directory (participant, key, genesis)")
    option("--somnet-key-file", "KEY_FILE", "the participant's key file (without --somnet-home)")
    option("--somnet-participant", "PARTICIPANT", "the participant id (without --somnet-home)")
    option("--somnet-from", "FROM", "the debited account (default: the participant's)")
    option("--somnet-to", "TO", "credited accounts, comma-separated")
    option("--somnet-amount", "AMOUNT", "tyiyn a transfer", type=int, default=1)
    option("--somnet-batch-size", "BATCH_SIZE", "transfers a request", type=int, default=100)
    option("--somnet-batches-per-user", "BATCHES_PER_USER", "signed first", type=int, default=50)
    option("--somnet-final-timeout", "FINAL_TIMEOUT", "seconds", type=float, default=30.0)
    option("--somnet-expiry-blocks", "EXPIRY_BLOCKS", "blocks", type=int, default=5000)
    option("--somnet-ca-file", "CA_FILE", "the CA of a node speaking HTTPS")
    option("--somnet-remittance", "REMITTANCE", "sealed text a transfer (needs --somnet-home)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The options, checked once, before anything is signed."""

    api_url: str
    credentials: Credentials
    genesis: Genesis | None
    remittance: str  # sealed to the banks that may read it (genesis has their keys); or ""
    from_account: str
    to_accounts: tuple[str, ...]
    amount: int
    batch_size: int
    batches_per_user: int
    final_timeout_s: float
    expiry_blocks: int
    verify: str | bool  # requests' TLS verification: a CA file, or the default

    @classmethod
    def of(cls, environment: Environment) -> Settings:
        """Raises ValueError naming the option at fault, or NodeError for an unusable node
        directory, key file or genesis file."""
        options = environment.parsed_options
        if options is None or not environment.host:
            raise ValueError("--host (the node's API URL) is required")
        genesis = None
        if options.somnet_home:
            config = load_config(Path(options.somnet_home))
            credentials = Credentials(config.node_id, load_key_file(config.key_file))
            genesis = load_genesis(config.genesis_file)
        elif options.somnet_key_file and options.somnet_participant:
            key = load_key_file(Path(options.somnet_key_file))
            credentials = Credentials(options.somnet_participant, key)
        else:
            raise ValueError("--somnet-home, or --somnet-key-file and --somnet-participant")
        from_account = options.somnet_from or credentials.participant_id
        to_accounts = tuple(a for a in (options.somnet_to or "").split(",") if a)
        if not to_accounts:
            raise ValueError("--somnet-to: at least one account to credit")
        if from_account in to_accounts:
            raise ValueError(f"--somnet-to: {from_account!r} is the debited account itself")
        if not math.isfinite(options.somnet_final_timeout):
            raise ValueError("--somnet-final-timeout: a finite number of seconds")
        for account in (credentials.participant_id, from_account, *to_accounts):
            if not is_id(account):
                raise ValueError(f"{account!r}: expected an id of {ID_RULE}")
        if genesis is not None:
            unknown = [a for a in to_accounts if genesis.owner_of(a) is None]
            if unknown:
                raise ValueError(f"--somnet-to: no account {unknown[0]!r} in the genesis file")
        _within("--somnet-amount", options.somnet_amount, 1, AMOUNT_MAX)
        _within("--somnet-batch-size", options.somnet_batch_size, 1, BATCH_SIZE_MAX)
        _within("--somnet-batches-per-user", options.somnet_batches_per_user, 1, 10**6)
        _within("--somnet-expiry-blocks", options.somnet_expiry_blocks, 1, EXPIRY_HEIGHTS_MAX)
        if not options.somnet_final_timeout > 0:
            raise ValueError("--somnet-final-timeout: more than 0 seconds")
        remittance = options.somnet_remittance or ""
        if remittance and genesis is None:
            raise ValueError("--somnet-remittance: needs --somnet-home (the banks' keys)")
        if len(remittance) > REMITTANCE_CHARS_MAX:
            raise ValueError(f"--somnet-remittance: at most {REMITTANCE_CHARS_MAX} characters")
        return cls(
            api_url=environment.host.rstrip("/"),
            credentials=credentials,
            genesis=genesis,
            remittance=remittance,
            from_account=from_account,
            to_accounts=to_accounts,
            amount=options.somnet_amount,
            batch_size=options.somnet_batch_size,
            batches_per_user=options.somnet_batches_per_user,
            final_timeout_s=options.somnet_final_timeout,
            expiry_blocks=options.somnet_expiry_blocks,
            verify=options.somnet_ca_file or True,
        )


def _within(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{option}: {value}, expected {low}..{high}")


@dataclass(slots=True)
class InFlight:
    """One sent batch: when its POST started, and which of its transfers are not final."""

    sent_at: float  # time.perf_counter(), as Locust times its requests
    tx_hashes: set[str]
    done: gevent.event.Event = field(default_factory=gevent.event.Event)


class Finality:
    """The transfers this process sent and has not seen final, followed on one event
    stream (one wait slot of the node's, however many users this process runs)."""

    def __init__(self, environment: Environment, settings: Settings) -> None:
        self.environment = environment
        self.settings = settings
        self.client = ApiClient(settings.api_url, settings.credentials)
        self.in_flight: dict[str, InFlight] = {}  # tx hash hex -> its batch
        self.chain_id = settings.genesis.chain_id if settings.genesis else ""
        self._follower: gevent.Greenlet[Any, Any] | None = None

    def start(self) -> None:
        """Follow from the next block on; the chain id from the node when no genesis
        file names it."""
        status = self.get_json("/v1/status")
        self.chain_id = self.chain_id or str(status["chain_id"])
        self._follower = gevent.spawn(self.follow, int(status["height"]) + 1)

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.kill(block=False)
        if self.in_flight:
            count = len(self.in_flight)
            LOG.warning("%d transfers sent, not seen final at the stop (--stop-timeout)", count)

    def signed_headers(self, method: str, target: str, body: bytes = b"") -> dict[str, str]:
        return self.client.signed_headers(method, target, body)

    def get_json(self, target: str) -> dict[str, Any]:
        url = f"{self.settings.api_url}{target}"
        headers = self.signed_headers("GET", target)
        response = requests.get(url, headers=headers, verify=self.settings.verify, timeout=30)
        response.raise_for_status()
        document = response.json()
        assert isinstance(document, dict)
        return document

    def sent(self, batch: InFlight) -> None:
        """Registered before the POST: its block may be seen before the answer."""
        for tx_hash in batch.tx_hashes:
            self.in_flight[tx_hash] = batch

    def settled(self, tx_hash: str, *, seen_at: float, refusal: str | None) -> None:
        batch = self.in_flight.pop(tx_hash, None)
        if batch is None:
            return  # another process's, or a run's before this one
        exception = None if refusal is None else RuntimeError(refusal)
        self.fire_final((seen_at - batch.sent_at) * 1000, exception)
        batch.tx_hashes.discard(tx_hash)
        if not batch.tx_hashes:
            batch.done.set()

    def abandon(self, batch: InFlight, reason: str) -> None:
        """Count the batch's transfers not yet final as failed, and forget them."""
        waited_ms = (time.perf_counter() - batch.sent_at) * 1000
        for tx_hash in batch.tx_hashes:
            self.in_flight.pop(tx_hash, None)
            self.fire_final(waited_ms, RuntimeError(reason))
        batch.tx_hashes.clear()
        batch.done.set()

    def fire_final(self, response_time_ms: float, exception: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type=FINAL_TYPE,
            name=FINAL_NAME,
            response_time=response_time_ms,
            response_length=0,
            exception=exception,
            context={},
        )

    def follow(self, from_height: int) -> None:
        """Read the event stream for ever, resuming after the last block seen when it
        breaks (a node restarting, a proxy closing it)."""
        height = from_height
        while True:
            try:
                height = self.read_stream(height)
            except (requests.RequestException, ValueError) as exc:
                LOG.warning("event stream at height %d: %r; resuming", height, exc)
            gevent.sleep(STREAM_RETRY_S)

    def read_stream(self, from_height: int) -> int:
        """Report the transfers of each block streamed; the next height to read."""
        target = f"/v1/events?from_height={from_height}"
        headers = self.signed_headers("GET", target) | {"Accept": "text/event-stream"}
        height = from_height
        with requests.get(
            f"{self.settings.api_url}{target}",
            headers=headers,
            stream=True,
            verify=self.settings.verify,
            timeout=(10, STREAM_READ_TIMEOUT_S),
        ) as response:
            response.raise_for_status()
            parser = EventStreamParser()
            for chunk in response.iter_content(chunk_size=None):
                seen_at = time.perf_counter()
                for event in parser.feed(chunk):
                    if event.type != "block":
                        continue
                    block = json.loads(event.data)
                    for tx in block["transactions"]:
                        refusal = None if tx["status"] == "final" else tx.get("code", "REFUSED")
                        self.settled(tx["tx_hash"], seen_at=seen_at, refusal=refusal)
                    height = int(block["height"]) + 1
        return height


finality: Finality | None = None
"""This process's follower, from test_start to test_stop (None on a master)."""


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    global finality
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users; each worker follows its own transfers
    try:
        finality = Finality(environment, Settings.of(environment))
        finality.start()
    except (ValueError, NodeError, requests.RequestException) as exc:
        finality = None
        LOG.error("somnet: %s", exc)  # every user stops at its start; the run ends
        environment.process_exit_code = 2
        if environment.runner is not None:
            gevent.spawn(environment.runner.quit)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    global finality
    if finality is not None:
        finality.stop()
        finality = None


@dataclass(frozen=True, slots=True)
class SignedBatch:
    body: bytes  # the msgpack array of wire bytes, as sent
    tx_hashes: tuple[str, ...]


def sign_batches(
    settings: Settings, chain_id: str, expiry_height: int
) -> tuple[list[SignedBatch], float]:
    """The user's transfers, signed and packed before its first request, and the CPU
    seconds that took (the other users run between two batches, and are not counted)."""
    credentials = settings.credentials
    to_accounts = itertools.cycle(settings.to_accounts)
    batches = []
    cpu_s = 0.0
    for _ in range(settings.batches_per_user):
        started = time.process_time()
        txs = []
        for _ in range(settings.batch_size):
            to_account = next(to_accounts)
            recipients = None
            if settings.remittance:
                assert settings.genesis is not None  # Settings.of checked
                recipients = settings.genesis.remittance_keys(
                    credentials.participant_id, [to_account]
                )
            txs.append(
                sign_transfer(
                    credentials.signing_key,
                    chain_id,
                    signer=credentials.participant_id,
                    uetr=uuid.uuid4().bytes,  # never reused: a reused UETR is a DUPLICATE
                    expiry_height=expiry_height,
                    from_account=settings.from_account,
                    to_account=to_account,
                    amount=settings.amount,
                    remittance=settings.remittance,
                    recipients=recipients,
                )
            )
        hashes = tuple(decode_tx(tx, chain_id).tx_hash.hex() for tx in txs)
        batches.append(SignedBatch(msgpack.packb(txs, use_bin_type=True), hashes))
        cpu_s += time.process_time() - started
        gevent.sleep(0)  # the users already running keep sending meanwhile
    return batches, cpu_s


class BankUser(HttpUser):
    """One bank client: its own pre-signed batches, one in flight at a time."""

    wait_time = constant(0)  # the wait for finality paces each user
    finality: Finality
    batches: Iterator[SignedBatch]

    def on_start(self) -> None:
        if finality is None:
            raise StopUser()  # the options were refused, or the run is stopping
        self.finality = finality
        settings = finality.settings
        self.client.verify = settings.verify
        status = finality.get_json("/v1/status")
        expiry_height = int(status["height"]) + settings.expiry_blocks
        batches, cpu_s = sign_batches(settings, finality.chain_id, expiry_height)
        signed = len(batches) * settings.batch_size
        LOG.info("a user signed %d transfers in %.2f CPU seconds", signed, cpu_s)
        self.batches = iter(batches)

    @task
    def send_batch(self) -> None:
        batch = next(self.batches, None)
        if batch is None:
            count = self.finality.settings.batches_per_user
            LOG.warning("a user sent its %d batches and stops (--somnet-batches-per-user)", count)
            raise StopUser()
        in_flight = InFlight(sent_at=time.perf_counter(), tx_hashes=set(batch.tx_hashes))
        self.finality.sent(in_flight)
        headers = self.finality.signed_headers("POST", BATCH_PATH, batch.body)
        headers["Content-Type"] = "application/msgpack"
        with self.client.post(
            BATCH_PATH, data=batch.body, headers=headers, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                code = self.error_code(response.text) or f"HTTP {response.status_code}"
                self.finality.abandon(in_flight, f"batch not accepted: {code}")
                return
            refused = self.refused(batch, response.json())
            if refused:
                response.failure(f"{len(refused)} refused: {sorted(set(refused.values()))}")
        # A refused transfer never reaches a block: it is a failed FINAL now.
        now = time.perf_counter()
        for tx_hash, code in refused.items():
            self.finality.settled(tx_hash, seen_at=now, refusal=code)
        settings = self.finality.settings
        if not in_flight.done.wait(timeout=settings.final_timeout_s):
            self.finality.abandon(in_flight, f"not final within {settings.final_timeout_s}s")

    @staticmethod
    def error_code(body: str) -> str | None:
        """The stable code of the node's error object, if the body is one."""
        try:
            document = json.loads(body)
        except ValueError:
            return None
        return str(document["code"]) if isinstance(document, dict) and "code" in document else None

    @staticmethod
    def refused(batch: SignedBatch, answer: dict[str, Any]) -> dict[str, str]:
        """Tx hash -> refusal code of the items the node refused at once."""
        refused = {}
        for result in answer["results"]:
            if result.get("status") not in ("pending", "final"):
                refused[batch.tx_hashes[int(result["index"])]] = str(result.get("code", "?"))
        return refused
