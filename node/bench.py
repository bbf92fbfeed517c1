"""`somnet bench ledger`: how fast one node settles and stores signed transfers.

The run builds a genesis with many accounts, pre-signs transfers, then takes them
through a node's two stages, block by block (`settle`), on a real store in a temporary
directory:

- entry: each transfer is decoded once and its one Ed25519 signature checked
  (`Ledger.check_tx`, what the mempool does when a transaction arrives);
- settle: the block is decoded and validated reusing those decoded transfers (no second
  decode or signature check), applied (`Ledger.apply_block`) and stored
  (`Store.commit_block`, one synced LMDB write transaction per block). "Applied and
  stored per second" is this stage.

Each phase is timed in wall and CPU seconds. Raw libsodium verifies per second are
measured in the same run, because the design's performance model is stated against
them.

The world builders (`make_world`, `sign_transfer_batch`, `certify`) are also what the
store's crash test writer uses, so both run the real ledger on real signed transactions.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.bindings import crypto_sign_open
from nacl.signing import SigningKey

from consensus.crypto import Signer
from consensus.messages import CommitCertificate, Height, Round, ValidatorId, VoteType
from consensus.wire import decode_certificate, encode_certificate
from node.block import decode_block, encode_block
from node.genesis import Genesis, parse_genesis
from node.ledger import Ledger, StoredReferences
from node.runtime import long_lived_state
from node.store import Store
from node.tx import decode_tx, sign_transfer

__all__ = [
    "BenchResult",
    "PhaseClock",
    "World",
    "certify",
    "make_world",
    "raw_verifies_per_second",
    "run_ledger_bench",
    "settle",
    "sign_transfer_batch",
]

CHAIN_ID = "som-bench"
VALIDATORS = ("nbkr", "val-1", "val-2", "val-3")
BALANCE_START = 1_000_000_00  # one million som per account, in tyiyn
AMOUNT_MAX = 1000
EXPIRY_HEIGHTS = 1000
RAW_VERIFY_SAMPLE_MAX = 20_000
MAP_SIZE_BYTES_BENCH = 16 * 1024**3
PHASES = ("entry", "validate", "apply", "store")
SETTLE_PHASES = ("validate", "apply", "store")


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """A genesis with its private keys: validators sign certificates, banks transfers."""

    genesis: Genesis
    bank_keys: dict[str, SigningKey]
    validator_signers: tuple[Signer, ...]
    accounts: tuple[tuple[str, str], ...]  # (account id, owning bank), in genesis order


def _seed(world_seed: int, name: str) -> bytes:
    return hashlib.sha256(f"somnet-bench/{world_seed}/{name}".encode()).digest()


def make_world(accounts: int, *, banks: int = 10, seed: int = 1) -> World:
    """A genesis with `accounts` bank accounts, each issued BALANCE_START tyiyn."""
    assert accounts >= 2
    assert 1 <= banks <= 100
    bank_ids = [f"bank-{i:02d}" for i in range(banks)]
    keys = {pid: SigningKey(_seed(seed, pid)) for pid in (*VALIDATORS, *bank_ids)}
    participants = []
    for index, pid in enumerate((*VALIDATORS, *bank_ids)):
        role = "issuer" if index == 0 else "validator" if pid in VALIDATORS else "bank"
        participants.append(
            {
                "id": pid,
                "name": f"participant {pid}",
                "role": role,
                "public_key": bytes(keys[pid].verify_key).hex(),
                "voting_power": 1 if pid in VALIDATORS else 0,
                "peer_address": f"127.0.0.1:{7000 + index}",
                "api_address": f"127.0.0.1:{8000 + index}",
            }
        )
    owned = [(f"acct-{i:07d}", bank_ids[i % banks]) for i in range(accounts)]
    document = {
        "chain_id": CHAIN_ID,
        "participants": participants,
        "accounts": [{"id": a, "owner": o} for a, o in owned],
        "issuance": [{"account": a, "amount": BALANCE_START} for a, _ in owned],
        "officers": [
            {
                "id": "officer-1",
                "public_key": bytes(SigningKey(_seed(seed, "officer-1")).verify_key).hex(),
            }
        ],
        "officer_threshold": 1,
    }
    genesis = parse_genesis(json.dumps(document))
    signers = tuple(Signer(CHAIN_ID, ValidatorId(v), _seed(seed, v)) for v in VALIDATORS)
    return World(
        genesis=genesis,
        bank_keys={b: keys[b] for b in bank_ids},
        validator_signers=signers,
        accounts=tuple(owned),
    )


def sign_transfer_batch(
    world: World, count: int, *, first_index: int, expiry_height: int, rng: random.Random
) -> list[bytes]:
    """`count` signed transfers between random accounts; UETRs come from the index, so
    transfers with distinct indexes never collide."""
    txs = []
    accounts = world.accounts
    for index in range(first_index, first_index + count):
        (source, bank), (target, _) = rng.sample(accounts, 2)
        txs.append(
            sign_transfer(
                world.bank_keys[bank],
                CHAIN_ID,
                signer=bank,
                uetr=index.to_bytes(16, "big"),
                expiry_height=expiry_height,
                from_account=source,
                to_account=target,
                amount=rng.randint(1, AMOUNT_MAX),
            )
        )
    return txs


def certify(world: World, height: int, block_hash: bytes) -> CommitCertificate:
    """A commit certificate signed by every validator."""
    votes = tuple(
        s.sign_vote(VoteType.PRECOMMIT, Height(height), Round(0), block_hash)
        for s in world.validator_signers
    )
    return CommitCertificate(
        height=Height(height), round=Round(0), value_id=block_hash, precommits=votes
    )


class PhaseClock:
    """Wall and CPU seconds per phase. CPU time (time.process_time) is the steadier
    figure on a machine shared with other work; wall time includes fsync waits."""

    def __init__(self, phases: tuple[str, ...] = PHASES) -> None:
        self.wall: dict[str, float] = dict.fromkeys(phases, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(phases, 0.0)
        self._wall_mark = 0.0
        self._cpu_mark = 0.0

    def start(self) -> None:
        self._wall_mark, self._cpu_mark = time.perf_counter(), time.process_time()

    def lap(self, phase: str) -> None:
        """Charge the time since the last start or lap to `phase`."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall[phase] += wall - self._wall_mark
        self.cpu[phase] += cpu - self._cpu_mark
        self._wall_mark, self._cpu_mark = wall, cpu


def settle(
    world: World,
    ledger: Ledger,
    store: Store,
    txs: list[bytes],
    *,
    time_ms: int,
    clock: PhaseClock | None = None,
) -> int:
    """Take `txs` through one node as a validator does; the settled block's height.

    Timed (`clock`), this node's part: the entry stage ("entry": decode each transfer and
    check its signature, once, as the mempool does), then the settle stage: decode and
    validate the proposed block reusing those decoded transfers (Merkle root once, no
    second decode or signature check), apply it, store it in one LMDB write transaction.
    Untimed, the other nodes' part: a proposer makes and encodes the block, the
    validators certify it."""
    clock = PhaseClock() if clock is None else clock
    clock.start()
    pool = {tx.tx_hash: tx for tx in [ledger.check_tx(tx_bytes) for tx_bytes in txs]}
    clock.lap("entry")
    height = ledger.height + 1
    previous = store.load_certificate(ledger.height) if ledger.height else None
    proposal = ledger.make_block(
        txs,
        time_ms=time_ms,
        proposer=VALIDATORS[0],
        prev_certificate=None if previous is None else decode_certificate(previous),
    )
    block_bytes = encode_block(proposal)
    certificate_bytes = encode_certificate(certify(world, height, proposal.header.hash()))
    clock.start()
    block = decode_block(block_bytes)
    ledger.validate_block(block, signatures_checked=pool)
    clock.lap("validate")
    effects = ledger.apply_block(block, certificate_bytes, verified=True, block_bytes=block_bytes)
    clock.lap("apply")
    store.commit_block(effects)
    clock.lap("store")
    return height


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    """Rates are transfers (or verifies) per second; `_cpu_` rates per CPU second.

    entry = decode + signature check (mempool); settle = decode and validate the block
    (reusing the entry's decoded transfers) + apply + store, i.e. applied and stored;
    end to end = entry + settle."""

    accounts: int
    transfers: int
    block_size: int
    blocks: int
    sign_seconds: float
    raw_verify_per_second: float  # libsodium crypto_sign_open alone
    raw_verify_per_cpu_second: float
    entry_per_cpu_second: float  # Ledger.check_tx: decode + one signature check
    validate_per_cpu_second: float  # decode_block + Ledger.validate_block
    apply_per_cpu_second: float  # Ledger.apply_block
    store_per_cpu_second: float  # Store.commit_block
    store_per_second: float  # Store.commit_block, wall (includes fsync)
    settle_per_cpu_second: float  # validate + apply + store: applied and stored
    settle_per_second: float  # the same, wall (includes fsync)
    end_to_end_per_cpu_second: float  # entry + settle
    end_to_end_ratio_to_raw_verify: float  # end_to_end / raw_verify, both per CPU second
    store_bytes: int

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.__slots__})


def _raw_verifies_per_second(world: World, txs: list[bytes]) -> tuple[float, float]:
    """(wall, CPU) rates of libsodium's crypto_sign_open on these transfers."""
    keys = {bank: bytes(key.verify_key) for bank, key in world.bank_keys.items()}
    sample = txs[:RAW_VERIFY_SAMPLE_MAX]
    public_keys = [keys[decode_tx(tx, CHAIN_ID).signer] for tx in sample]
    return raw_verifies_per_second(list(zip(sample, public_keys, strict=True)))


def raw_verifies_per_second(signed: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """(wall, CPU) rates of libsodium's crypto_sign_open alone on (signed message, public
    key) pairs: the unit of the design's performance model (and of `somnet bench
    network`'s ceiling), measured on this machine in the same run."""
    assert signed
    clock = PhaseClock(("verify",))
    clock.start()
    for signed_message, public_key in signed:
        crypto_sign_open(signed_message, public_key)
    clock.lap("verify")
    wall, cpu = max(clock.wall["verify"], 1e-9), max(clock.cpu["verify"], 1e-9)
    return len(signed) / wall, len(signed) / cpu


def _settle_all(
    world: World, txs: list[bytes], block_size: int, clock: PhaseClock
) -> tuple[int, int]:
    """Settle `txs` in blocks into a fresh store; (blocks, store size in bytes). The
    ledger looks up references in the store, as a node's does."""
    # Measured the way the node runs: setup objects frozen, rare collections.
    with long_lived_state():
        with tempfile.TemporaryDirectory(prefix="somnet-bench-") as directory:
            path = Path(directory) / "store"
            with Store.open(path, chain_id=CHAIN_ID, map_size_bytes=MAP_SIZE_BYTES_BENCH) as store:
                ledger = Ledger(world.genesis, StoredReferences(store))
                blocks = 0
                for start in range(0, len(txs), block_size):
                    chunk = txs[start : start + block_size]
                    settle(world, ledger, store, chunk, time_ms=1_700_000_000_000, clock=clock)
                    blocks += 1
            return blocks, (path / "data.mdb").stat().st_size


def run_ledger_bench(
    *,
    accounts: int,
    transfers: int,
    block_size: int,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Run the whole benchmark in a temporary store directory and return its figures."""
    assert accounts >= 2
    assert transfers >= 1
    assert block_size >= 1
    progress(f"genesis with {accounts} accounts")
    world = make_world(accounts)
    started = time.perf_counter()
    txs = sign_transfer_batch(
        world, transfers, first_index=0, expiry_height=EXPIRY_HEIGHTS, rng=random.Random(1)
    )
    sign_seconds = time.perf_counter() - started
    progress(f"signed {transfers} transfers in {sign_seconds:.1f} s")
    raw_per_second, raw_per_cpu_second = _raw_verifies_per_second(world, txs)
    progress("entry (decode, verify) and settling (validate, apply, store), block by block")
    clock = PhaseClock()
    blocks, store_bytes = _settle_all(world, txs, block_size, clock)
    settle_cpu = sum(clock.cpu[phase] for phase in SETTLE_PHASES)
    settle_wall = sum(clock.wall[phase] for phase in SETTLE_PHASES)
    end_to_end_per_cpu_second = transfers / (settle_cpu + clock.cpu["entry"])
    return BenchResult(
        accounts=accounts,
        transfers=transfers,
        block_size=block_size,
        blocks=blocks,
        sign_seconds=round(sign_seconds, 3),
        raw_verify_per_second=round(raw_per_second),
        raw_verify_per_cpu_second=round(raw_per_cpu_second),
        entry_per_cpu_second=_rate(transfers, clock.cpu["entry"]),
        validate_per_cpu_second=_rate(transfers, clock.cpu["validate"]),
        apply_per_cpu_second=_rate(transfers, clock.cpu["apply"]),
        store_per_cpu_second=_rate(transfers, clock.cpu["store"]),
        store_per_second=_rate(transfers, clock.wall["store"]),
        settle_per_cpu_second=_rate(transfers, settle_cpu),
        settle_per_second=_rate(transfers, settle_wall),
        end_to_end_per_cpu_second=round(end_to_end_per_cpu_second),
        end_to_end_ratio_to_raw_verify=round(end_to_end_per_cpu_second / raw_per_cpu_second, 2),
        store_bytes=store_bytes,
    )


def _rate(count: int, seconds: float) -> float:
    """Per second; a phase too short for the clock's resolution counts as 1 ns."""
    return round(count / max(seconds, 1e-9))
