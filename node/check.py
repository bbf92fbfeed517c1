"""`somnet check`: verify a node's whole store and name every fault found in it.

Theory of operation.
- A node reads an old record only when asked for it, so damage to an old block, result
  or balance goes unnoticed until then. The check reads every record once, with the
  store opened read-only (`Store.open_readonly`): it writes nothing.
- The chain is streamed block by block, and each height gets two checks:
  1. the chain as stored: the block decodes, sits under its own height, links to the
     previous block by hash, agrees with its chain record, the block-hash index and its
     header's tx_root; the certificate stored with it and the one block h+1 carries
     both commit this very (height, block hash) and verify against the validator set in
     force at their height, following the replay's governance from genesis
     (consensus.crypto.verify_certificate; once the replay stopped, against the last set
     it knows);
  2. the replay: a fresh in-memory ledger settles the block as a syncing node would
     (`apply_block(verified=False)`: every signature checked again), and what the store
     derived from the block is compared with what the replay derives: the height's tx
     results, the tx index, and the app hash that the next header carries.
  The replay stops at the first block it cannot settle (one problem says why); the later
  blocks still get check 1, and their results are checked for form only.
- After the chain, if the replay reached the tip: the tip (app hash, changes hash,
  totals), the governance state record (participants, frozen accounts, validator sets:
  absent while it is genesis's), every balance (an account never written keeps its
  genesis balance; an admitted participant's account starts at 0), every
  consumed reference and every account entry (the statement index: each one equal to the
  replay's, none missing, none extra) are compared with the replay's. The durable pool,
  the dropped fates and the consensus state must decode and agree with the chain.
- A StoreCorrupted raised by a read (a checksum, a layout) becomes a Problem carrying its
  message, and the check goes on with the next record.
- Memory: one block at a time, plus the replay's ledger: balances are O(accounts), and
  the consumed references (MemoryReferences, a dict) and the expected account entries
  (two or so per applied transaction) are O(transactions in the chain).
- Check a stopped node: a node that commits while the check runs moves the tip, which is
  reported, and records read before and after its commit disagree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from consensus.config import ValidatorSet
from consensus.crypto import verify_certificate
from consensus.errors import WireError
from consensus.messages import CommitCertificate
from consensus.wire import decode_certificate, decode_durable_state
from node.block import HASH_SIZE, ZERO_HASH, Block, certificate_hash, decode_block
from node.config import ConfigError, load_config
from node.effects import BlockEffects
from node.errors import BlockError, GenesisError, NodeError, TxRefused
from node.genesis import Genesis, load_genesis
from node.ledger import Ledger, MemoryReferences, decode_tx_result, genesis_governance
from node.mempool import decode_dropped
from node.merkle import merkle_root
from node.store import (
    ACCOUNT_ENTRY,
    DB_ACCOUNT_ENTRIES,
    DB_BALANCES,
    DB_BLOCK_HASHES,
    DB_BLOCKS,
    DB_CERTIFICATES,
    DB_CHAIN,
    DB_CONSENSUS,
    DB_DROPPED,
    DB_META,
    DB_POOL,
    DB_REFERENCES,
    DB_TX_INDEX,
    DB_TX_RESULTS,
    DB_VALIDATOR_SETS,
    FORMAT_VERSION,
    KEY_CHAIN_ID,
    KEY_FORMAT,
    KEY_GOVERNANCE,
    KEY_TIP,
    Store,
    StoreCorrupted,
    StoreTip,
    account_entry_key,
    decode_account_entry_key,
    height_key,
)
from node.tx import UETR_SIZE, decode_tx

__all__ = ["PROBLEMS_KEPT_MAX", "CheckReport", "Problem", "check_home", "check_store"]

PROBLEMS_KEPT_MAX = 1000  # listed; beyond it problems are only counted
BALANCE_SIZE = 8
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with the store."""

    subject: str  # what an operator looks for: "height 17", "balance bank-e", "store"
    database: str  # the store database holding the record: "blocks", "balances", ...
    key: str  # the record's key, readable: a height, an account id, a hash in hex
    message: str

    def line(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckReport:
    blocks: int
    transactions: int
    accounts: int
    references: int
    problems: tuple[Problem, ...]  # the first PROBLEMS_KEPT_MAX found
    problem_count: int

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        checked = (
            f"checked {self.blocks} blocks, {self.transactions} transactions, "
            f"{self.accounts} accounts, {self.references} references"
        )
        if self.ok:
            return f"{checked}: OK"
        noun = "problem" if self.problem_count == 1 else "problems"
        listed = len(self.problems)
        more = "" if listed == self.problem_count else f" (the first {listed} listed)"
        return f"{checked}: {self.problem_count} {noun}{more}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "blocks": self.blocks,
                "transactions": self.transactions,
                "accounts": self.accounts,
                "references": self.references,
                "problem_count": self.problem_count,
                "problems": [
                    {
                        "subject": p.subject,
                        "database": p.database,
                        "key": p.key,
                        "message": p.message,
                    }
                    for p in self.problems
                ],
                "summary": self.summary(),
            },
            indent=2,
        )


def check_home(home: Path) -> CheckReport:
    """Check the store of the node at `home` (its node.toml names the genesis and the
    data directory); see the module docstring for what is checked.

    Raises:
        ConfigError: node.toml or the genesis file is refused.
        StoreError: there is no store to check, it belongs to another chain, or LMDB
            cannot open it. A damaged store is reported, not raised.
    """
    config = load_config(home)
    try:
        genesis = load_genesis(config.genesis_file)
    except GenesisError as exc:
        raise ConfigError(f"{config.genesis_file}: {exc}") from exc
    try:
        store = Store.open_readonly(
            config.data_dir,
            chain_id=genesis.chain_id,
            map_size_bytes=config.store_map_size_bytes,
        )
    except StoreCorrupted as exc:
        problem = Problem(subject="store", database="", key="", message=str(exc))
        return CheckReport(
            blocks=0,
            transactions=0,
            accounts=len(genesis.accounts),
            references=0,
            problems=(problem,),
            problem_count=1,
        )
    with store:
        return check_store(store, genesis)


def check_store(store: Store, genesis: Genesis) -> CheckReport:
    """Check every record of an open store against a replay of its chain from `genesis`.
    Never raises for what it finds in the store: each fault is a Problem."""
    return _Check(store, genesis).run()


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a problem lies: what the operator reads, the database and the key."""

    subject: str
    database: bytes
    key: str


class _Check:
    """One run over one store: the replayed ledger and the problems found so far."""

    def __init__(self, store: Store, genesis: Genesis) -> None:
        self.store = store
        self.chain_id = genesis.chain_id
        self.references = MemoryReferences()
        self.ledger = Ledger(genesis, self.references)
        self.genesis_balances = dict(self.ledger.balances)
        self.genesis_governance = genesis_governance(genesis).encode()
        self.replaying = True  # until a block cannot be settled
        self.all_decoded = True  # every block read and decoded: the tx count is exact
        self.previous_hash: bytes | None = ZERO_HASH  # of block h-1; None if unknown
        self.transactions = 0
        self.stored_references = 0
        # What the replay says account_entries must hold: key -> value (unsealed).
        self.account_entries: dict[bytes, bytes] = {}
        # What validator_sets must hold: key (first height of a new set) -> encoded set.
        self.validator_sets: dict[bytes, bytes] = {}
        self.problems: list[Problem] = []
        self.problem_count = 0

    def run(self) -> CheckReport:
        tip = self.store.tip
        tip_place = _Place("tip", DB_META, "tip")
        tip_record = self.read(tip_place, partial(self.store.load_record, DB_META, KEY_TIP))
        self.check_meta()
        self.check_counts(tip)
        for height in range(1, tip.height + 1):
            self.check_height(height)
        self.check_tip(tip)
        self.check_balances()
        self.check_references()
        self.check_account_entries()
        self.check_validator_sets()
        self.check_pool()
        self.check_dropped(tip)
        self.check_consensus_state()
        if self.read(tip_place, partial(self.store.load_record, DB_META, KEY_TIP)) != tip_record:
            self.report(
                tip_place,
                "the tip moved while the check ran: a node is writing to "
                "this store; stop it and check again",
            )
        return CheckReport(
            blocks=tip.height,
            transactions=self.transactions,
            accounts=len(self.ledger.balances),
            references=self.stored_references,
            problems=tuple(self.problems),
            problem_count=self.problem_count,
        )

    # -- reporting ------------------------------------------------------------------------

    def report(self, place: _Place, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT_MAX:
            self.problems.append(
                Problem(
                    subject=place.subject,
                    database=place.database.decode(),
                    key=place.key,
                    message=message,
                )
            )

    def read(
        self, place: _Place, load: Callable[[], _T | None], *, required: bool = False
    ) -> _T | None:
        """`load()`; None, with a problem reported, if it raises StoreCorrupted, or if
        it finds nothing and the record is `required`."""
        try:
            value = load()
        except StoreCorrupted as exc:
            self.report(place, str(exc))
            return None
        if value is None and required:
            self.report(place, f"the {place.database.decode()} database has no record for it")
        return value

    def settled(self, subject: str, tx_hash: bytes) -> bool | None:
        """Whether a block settled `tx_hash`, by the tx index; None (reported) if the
        index entry or the record it points at is damaged."""
        return self.read(
            _Place(subject, DB_TX_INDEX, tx_hash.hex()),
            lambda: self.store.load_tx_result(tx_hash) is not None,
        )

    # -- the store as a whole -------------------------------------------------------------

    def check_meta(self) -> None:
        for key, expected in (
            (KEY_CHAIN_ID, self.chain_id.encode()),
            (KEY_FORMAT, str(FORMAT_VERSION).encode()),
        ):
            place = _Place("store", DB_META, key.decode())
            stored = self.read(place, partial(self.store.load_record, DB_META, key), required=True)
            if stored is not None and stored != expected:
                self.report(place, f"{key.decode()} is {stored!r}, expected {expected!r}")

    def check_counts(self, tip: StoreTip) -> None:
        counts = self.store.entry_counts()
        for db_name in (DB_BLOCKS, DB_CERTIFICATES, DB_CHAIN, DB_BLOCK_HASHES, DB_TX_RESULTS):
            count = counts[db_name.decode()]
            if count != tip.height:
                self.report(
                    _Place("store", db_name, ""),
                    f"the {db_name.decode()} database "
                    f"holds {count} records, but the tip is at height {tip.height}",
                )

    # -- one height -----------------------------------------------------------------------

    def check_height(self, height: int) -> None:
        """Check one height's records, settle its block on the replay, and compare."""
        subject = f"height {height}"
        key = height_key(height)
        store = self.store
        chain_place = _Place(subject, DB_CHAIN, str(height))
        chain = self.read(chain_place, partial(store.load_record, DB_CHAIN, key), required=True)
        if chain is not None and len(chain) != 2 * HASH_SIZE:
            self.report(chain_place, f"a chain record of {len(chain)} bytes")
            chain = None
        block_place = _Place(subject, DB_BLOCKS, str(height))
        block_bytes = self.read(block_place, partial(store.load_block, height), required=True)
        certificate_bytes = self.read(
            _Place(subject, DB_CERTIFICATES, str(height)),
            partial(store.load_certificate, height),
            required=True,
        )
        block = None
        if block_bytes is not None:
            block = self.decode_block(block_place, height, block_bytes)
        sound = block is not None and self.check_links(block_place, block, chain)
        if block is not None:
            sound &= self.check_certificates(subject, block, certificate_bytes)
        self.all_decoded &= block is not None
        block_hash = None if block is None else block.header.hash()
        if chain is not None and (block_hash is None or not sound):
            block_hash = chain[:HASH_SIZE]  # what was stored, and what the next block names
        if block_hash is not None:
            self.check_block_hash_index(subject, height, block_hash)
        effects = None
        if block is None or block_bytes is None or certificate_bytes is None:
            if self.replaying:
                self.stop_replay(block_place, "the block or its certificate cannot be read")
        elif self.replaying:
            effects = self.replay(block_place, block, block_bytes, certificate_bytes, sound)
        if effects is not None:
            for entry in effects.account_entries:
                key = account_entry_key(entry.account, height, entry.tx_index)
                value = ACCOUNT_ENTRY.pack(entry.tx_hash, entry.delta, entry.balance_after)
                self.account_entries[key] = value
            if effects.validator_set_change is not None:
                self.validator_sets[height_key(height + 1)] = effects.validator_set_change
        self.check_tx_results(subject, height, block, effects)
        self.previous_hash = block_hash

    def decode_block(self, place: _Place, height: int, block_bytes: bytes) -> Block | None:
        """The block, if it decodes and its header names this height and chain."""
        try:
            block = decode_block(block_bytes)
        except BlockError as exc:
            self.report(place, f"the block does not decode: {exc}")
            return None
        header = block.header
        self.transactions += header.tx_count
        if header.height != height:
            self.report(place, f"the block's header says height {header.height}")
            return None
        if header.chain_id != self.chain_id:
            self.report(place, f"the block belongs to chain {header.chain_id!r}")
            return None
        return block

    def check_links(self, place: _Place, block: Block, chain: bytes | None) -> bool:
        """The block against its chain record, the previous block's hash and its own
        header's tx_root. False if the block itself is wrong."""
        header = block.header
        block_hash = header.hash()
        previous = self.previous_hash
        sound = True
        if chain is not None and chain[:HASH_SIZE] != block_hash:
            self.report(
                place,
                f"the block's hash {block_hash.hex()} is not the chain "
                f"record's {chain[:HASH_SIZE].hex()}",
            )
            sound = False
        if chain is not None and previous is not None and chain[HASH_SIZE:] != previous:
            self.report(
                _Place(place.subject, DB_CHAIN, place.key),
                "the chain record's "
                f"previous hash {chain[HASH_SIZE:].hex()} is not the previous "
                f"block's hash {previous.hex()}",
            )
        if previous is not None and header.prev_block_hash != previous:
            self.report(
                place,
                "hash chain broken: the block names previous hash "
                f"{header.prev_block_hash.hex()}, not {previous.hex()}",
            )
            sound = False
        if merkle_root(block.txs) != header.tx_root:
            self.report(
                place,
                "the block's transactions do not match its header's tx_root",
            )
            sound = False
        return sound

    def check_certificates(
        self, subject: str, block: Block, certificate_bytes: bytes | None
    ) -> bool:
        """The certificate stored for this block, and the one the block carries for the
        previous block: each must commit its (height, block hash) and verify."""
        header = block.header
        height = header.height
        sound = certificate_bytes is not None
        if certificate_bytes is not None:
            place = _Place(subject, DB_CERTIFICATES, str(height))
            try:
                certificate = decode_certificate(certificate_bytes)
            except WireError as exc:
                self.report(place, f"the certificate does not decode: {exc}")
                return False
            sound &= self.check_commits(
                place, "its certificate", certificate, height, header.hash()
            )
        carried = block.prev_certificate
        if carried is None:  # exactly at height 1 (decode_block)
            return sound
        place = _Place(subject, DB_BLOCKS, str(height))
        if header.prev_certificate_hash != certificate_hash(carried):
            self.report(
                place,
                "the header's prev_certificate_hash does not match the "
                "certificate the block carries",
            )
            sound = False
        what = f"the certificate it carries for height {height - 1}"
        return self.check_commits(place, what, carried, height - 1, self.previous_hash) and sound

    def check_commits(
        self,
        place: _Place,
        what: str,
        certificate: CommitCertificate,
        height: int,
        block_hash: bytes | None,
    ) -> bool:
        """True if `certificate` commits (height, block_hash) and verifies."""
        if certificate.height != height or block_hash not in (None, certificate.value_id):
            expected = "" if block_hash is None else f" block {block_hash.hex()}"
            self.report(
                place,
                f"{what} commits height {certificate.height} block "
                f"{certificate.value_id.hex()}, not height {height}{expected}",
            )
            return False
        if not verify_certificate(self.chain_id, certificate, self.validators_at(height)):
            self.report(
                place,
                f"{what} does not verify against the validator set of height {height}: "
                "a signature, a voter or the voting power is wrong",
            )
            return False
        return True

    def validators_at(self, height: int) -> ValidatorSet:
        """The set in force at `height` as the replay knows it: exact while it replays;
        once it stopped, the last set it knew (a later change cannot be followed)."""
        ledger = self.ledger
        try:
            return ledger.validators_at(height)
        except NodeError:
            return ledger.validators_at(ledger.height + 2)

    def check_block_hash_index(self, subject: str, height: int, block_hash: bytes) -> None:
        place = _Place(subject, DB_BLOCK_HASHES, block_hash.hex())
        load = partial(self.store.load_record, DB_BLOCK_HASHES, block_hash)
        stored = self.read(place, load, required=True)
        if stored is not None and stored != height_key(height):
            self.report(
                place,
                "the block_hashes entry of the block's hash names height "
                f"{int.from_bytes(stored, 'big')}",
            )

    # -- replay ---------------------------------------------------------------------------

    def replay(
        self,
        place: _Place,
        block: Block,
        block_bytes: bytes,
        certificate_bytes: bytes,
        sound: bool,
    ) -> BlockEffects | None:
        """Settle the block on the replayed ledger, as a syncing node does; None if the
        replay stops here."""
        assert self.replaying
        if not sound:
            self.stop_replay(place, "the block or its certificate is damaged (above)")
            return None
        ledger = self.ledger
        app_hash = block.header.app_hash
        if app_hash != ledger.app_hash:
            self.stop_replay(
                place,
                f"the header's app_hash {app_hash.hex()} is not the "
                f"replay's {ledger.app_hash.hex()} after height {ledger.height}",
            )
            return None
        try:
            return ledger.apply_block(
                block, certificate_bytes, verified=False, block_bytes=block_bytes
            )
        except BlockError as exc:
            self.stop_replay(place, f"the ledger refuses the block: {exc}")
            return None

    def stop_replay(self, place: _Place, reason: str) -> None:
        assert self.replaying
        self.replaying = False
        self.report(
            place,
            f"replay stopped: {reason}; nothing stored after height "
            f"{self.ledger.height} is compared with the replay",
        )

    def check_tx_results(
        self, subject: str, height: int, block: Block | None, effects: BlockEffects | None
    ) -> None:
        """The height's results record against the replay's results (or, once the replay
        stopped, for form), and the tx index entry of each transaction."""
        place = _Place(subject, DB_TX_RESULTS, str(height))
        stored = self.read(place, partial(self.store.load_tx_results, height), required=True)
        if stored is None:
            return
        if block is not None and len(stored) != block.header.tx_count:
            self.report(
                place,
                f"tx_results holds {len(stored)} entries, the block "
                f"{block.header.tx_count} transactions",
            )
        replayed = None if effects is None else effects.tx_results
        for index, entry in enumerate(stored):
            if replayed is None:
                self.check_tx_result_form(place, height, index, entry[1])
            elif index < len(replayed):
                self.check_tx_result(place, height, index, entry, replayed[index])
        for tx_hash, _ in stored if replayed is None else replayed:
            if self.settled(subject, tx_hash) is False:
                self.report(
                    _Place(subject, DB_TX_INDEX, tx_hash.hex()),
                    f"the tx_index lacks tx {tx_hash.hex()}",
                )

    def check_tx_result(
        self,
        place: _Place,
        height: int,
        index: int,
        stored: tuple[bytes, bytes],
        replayed: tuple[bytes, bytes],
    ) -> None:
        entry = f"tx_results entry {index}"
        if stored[0] != replayed[0]:
            self.report(
                place,
                f"{entry} names tx {stored[0].hex()}, the block's "
                f"transaction {index} is {replayed[0].hex()}",
            )
        elif stored[1] != replayed[1]:
            self.report(
                place,
                f"{entry} differs: stored "
                f"{_describe_result(stored[1], height, index)}, replay "
                f"{_describe_result(replayed[1], height, index)}",
            )

    def check_tx_result_form(self, place: _Place, height: int, index: int, value: bytes) -> None:
        entry = f"tx_results entry {index}"
        try:
            result = decode_tx_result(value)
        except NodeError as exc:
            self.report(place, f"{entry} does not decode: {exc}")
            return
        if (result.height, result.index) != (height, index):
            self.report(place, f"{entry} says height {result.height} index {result.index}")

    # -- after the chain ------------------------------------------------------------------

    def check_tip(self, tip: StoreTip) -> None:
        """The tip and the tx index's size against the chain; the tip's state against the
        replay's."""
        indexed = self.store.entry_counts()[DB_TX_INDEX.decode()]
        if self.all_decoded and indexed != self.transactions:
            self.report(
                _Place("store", DB_TX_INDEX, ""),
                f"the tx_index holds {indexed} entries, the chain {self.transactions} transactions",
            )
        place = _Place("tip", DB_META, "tip")
        if tip.height and self.previous_hash not in (None, tip.block_hash):
            assert self.previous_hash is not None
            self.report(
                place,
                f"block hash {tip.block_hash.hex()} is not block "
                f"{tip.height}'s {self.previous_hash.hex()}",
            )
        if not tip.height or not self.replaying:
            return
        ledger = self.ledger
        for field, stored, replayed in (
            ("app_hash", tip.app_hash.hex(), ledger.app_hash.hex()),
            ("changes_hash", tip.changes_hash.hex(), ledger.changes_hash.hex()),
            ("issued_total", tip.issued_total, ledger.issued_total),
            ("redeemed_total", tip.redeemed_total, ledger.redeemed_total),
        ):
            if stored != replayed:
                self.report(place, f"{field} differs: stored {stored}, replay {replayed}")
        self.check_governance()

    def check_governance(self) -> None:
        """The stored governance record against the replay's (absent: genesis's)."""
        place = _Place("governance", DB_META, KEY_GOVERNANCE.decode())
        stored = self.read(place, partial(self.store.load_record, DB_META, KEY_GOVERNANCE))
        replayed = self.ledger.governance.encode()
        if (self.genesis_governance if stored is None else stored) != replayed:
            what = "absent (so genesis's)" if stored is None else "stored"
            self.report(
                place,
                f"the governance state {what} is not the replay's: a participant, key, "
                "suspension, frozen account or validator set differs",
            )

    def check_balances(self) -> None:
        """Every stored balance against the replay's; an account the store lacks must
        still hold its genesis balance in the replay."""
        replayed = self.ledger.balances
        stored_accounts: set[str] = set()
        for key, value in self.store.scan(DB_BALANCES):
            account = key.decode("ascii", "backslashreplace")
            stored_accounts.add(account)
            place = _Place(f"balance {account}", DB_BALANCES, account)
            if isinstance(value, StoreCorrupted):
                self.report(place, str(value))
            elif len(value) != BALANCE_SIZE:
                self.report(place, f"a record of {len(value)} bytes")
            elif account not in replayed:
                balance = int.from_bytes(value, "big")
                self.report(place, f"stored {balance}, but the replay has no such account")
            elif self.replaying and int.from_bytes(value, "big") != replayed[account]:
                balance = int.from_bytes(value, "big")
                self.report(place, f"stored {balance}, replay {replayed[account]}")
        if not self.replaying:
            return
        for account, balance in replayed.items():
            genesis_balance = self.genesis_balances.get(account, 0)  # 0: admitted since
            if account not in stored_accounts and balance != genesis_balance:
                self.report(
                    _Place(f"balance {account}", DB_BALANCES, account),
                    f"not stored (so {genesis_balance} from genesis), replay {balance}",
                )

    def check_references(self) -> None:
        """Every stored (signer, UETR) reference against the replay's, both in key order."""
        replayed: list[tuple[bytes, bytes]] = []
        if self.replaying:
            replayed = sorted(self.references.consumed.items())
        for key, stored, holder in _merge(self.store.scan(DB_REFERENCES), iter(replayed)):
            place = _Place(f"reference {_reference_name(key)}", DB_REFERENCES, key.hex())
            if stored is not None:
                self.stored_references += 1
            if isinstance(stored, StoreCorrupted):
                self.report(place, str(stored))
            elif stored is not None and len(stored) != HASH_SIZE:
                self.report(place, f"a record of {len(stored)} bytes")
            elif not self.replaying:
                continue
            elif stored is None:
                assert holder is not None
                self.report(place, f"missing; the replay consumed it with tx {holder.hex()}")
            elif holder is None:
                self.report(
                    place,
                    f"stored (tx {stored.hex()}), but no transaction of the chain consumed it",
                )
            elif stored != holder:
                self.report(place, f"stored tx {stored.hex()}, replay tx {holder.hex()}")

    def check_account_entries(self) -> None:
        """Every stored account entry against the replay's, both in key order: equal,
        none missing, none extra. Once the replay stopped, only their checksums."""
        replayed = sorted(self.account_entries.items()) if self.replaying else []
        stored_entries = self.store.scan(DB_ACCOUNT_ENTRIES)
        for key, stored, expected in _merge(stored_entries, iter(replayed)):
            place = _Place(_account_entry_name(key), DB_ACCOUNT_ENTRIES, key.hex())
            if isinstance(stored, StoreCorrupted):
                self.report(place, str(stored))
            elif stored is not None and len(stored) != ACCOUNT_ENTRY.size:
                self.report(place, f"a record of {len(stored)} bytes")
            elif not self.replaying:
                continue
            elif stored is None:
                assert expected is not None
                self.report(place, f"missing; the replay has {_describe_entry(expected)}")
            elif expected is None:
                self.report(
                    place,
                    f"stored {_describe_entry(stored)}, but no applied transaction of the "
                    "chain moves this account there",
                )
            elif stored != expected:
                self.report(
                    place, f"stored {_describe_entry(stored)}, replay {_describe_entry(expected)}"
                )

    def check_validator_sets(self) -> None:
        """The stored changes of validator set (what proofs carry) against the replay's:
        equal, none missing, none extra. Once the replay stopped, only their checksums."""
        replayed = sorted(self.validator_sets.items()) if self.replaying else []
        stored_sets = self.store.scan(DB_VALIDATOR_SETS)
        for key, stored, expected in _merge(stored_sets, iter(replayed)):
            place = _Place(
                f"validator set from {int.from_bytes(key, 'big')}", DB_VALIDATOR_SETS, key.hex()
            )
            if isinstance(stored, StoreCorrupted):
                self.report(place, str(stored))
            elif self.replaying and stored != expected:
                what = "missing" if stored is None else "not the one the chain's headers name"
                self.report(place, f"{what}: the replay has a different change of set here")

    def check_pool(self) -> None:
        """The durable pool: accepted transactions, neither settled nor dropped."""
        for key, value in self.store.scan(DB_POOL):
            subject = f"pool {key.hex()}"
            place = _Place(subject, DB_POOL, key.hex())
            if isinstance(value, StoreCorrupted):
                self.report(place, str(value))
                continue
            try:
                tx = decode_tx(value, self.chain_id)
            except TxRefused as exc:
                self.report(place, f"does not decode: {exc}")
                continue
            if tx.tx_hash != key:
                self.report(place, f"holds another transaction, {tx.tx_hash.hex()}")
            elif self.settled(subject, key):
                self.report(place, "settled, yet still in the pool")
            load_dropped = partial(self.store.load_record, DB_DROPPED, key)
            if self.read(_Place(subject, DB_DROPPED, key.hex()), load_dropped) is not None:
                self.report(place, "dropped, yet still in the pool")

    def check_dropped(self, tip: StoreTip) -> None:
        """The fates of accepted transactions that will never settle."""
        for key, value in self.store.scan(DB_DROPPED):
            subject = f"dropped {key.hex()}"
            place = _Place(subject, DB_DROPPED, key.hex())
            if isinstance(value, StoreCorrupted):
                self.report(place, str(value))
                continue
            try:
                fate = decode_dropped(value)
            except NodeError as exc:
                self.report(place, f"does not decode: {exc}")
                continue
            if fate.height > tip.height:
                self.report(place, f"dropped at height {fate.height}, beyond the tip")
            if self.settled(subject, key):
                self.report(place, "dropped, yet a block settled it")
            first = fate.first_tx_hash
            if first is not None and self.settled(subject, first) is False:
                self.report(
                    place,
                    f"{fate.code.name}: names tx {first.hex()} as its "
                    "UETR's holder, but no block settled that",
                )

    def check_consensus_state(self) -> None:
        place = _Place("consensus state", DB_CONSENSUS, "durable")
        data = self.read(place, self.store.load_durable_state)
        if data is None:
            return
        try:
            decode_durable_state(data)
        except WireError as exc:
            self.report(place, f"does not decode: {exc}")


def _describe_result(value: bytes, height: int, index: int) -> str:
    """A stored result as an operator reads it: "applied", "INSUFFICIENT_FUNDS", ..."""
    try:
        result = decode_tx_result(value)
    except NodeError:
        return f"undecodable {value.hex()}"
    described = "applied" if result.code is None else result.code.name
    if (result.height, result.index) != (height, index):
        described += f" (for height {result.height} index {result.index})"
    return described


def _account_entry_name(key: bytes) -> str:
    """An account entry key as `entry <account> height <h> index <i>`."""
    decoded = decode_account_entry_key(key)
    if decoded is None:
        return f"entry {key.hex()}"
    account, height, index = decoded
    return f"entry {account} height {height} index {index}"


def _describe_entry(value: bytes) -> str:
    """An account entry's value as an operator reads it."""
    assert len(value) == ACCOUNT_ENTRY.size
    tx_hash, delta, balance_after = ACCOUNT_ENTRY.unpack(value)
    return f"tx {tx_hash.hex()} amount {delta:+d} balance_after {balance_after}"


def _reference_name(key: bytes) -> str:
    """A (signer, UETR) reference key as `signer/uetr`."""
    if len(key) <= UETR_SIZE:
        return key.hex()
    signer = key[UETR_SIZE:].decode("ascii", "backslashreplace")
    return f"{signer}/{uuid.UUID(bytes=key[:UETR_SIZE])}"


def _merge(
    stored: Iterator[tuple[bytes, bytes | StoreCorrupted]],
    replayed: Iterator[tuple[bytes, bytes]],
) -> Iterator[tuple[bytes, bytes | StoreCorrupted | None, bytes | None]]:
    """Walk two streams sorted by key together: (key, stored value or None, replayed
    value or None), in key order."""
    next_stored = next(stored, None)
    next_replayed = next(replayed, None)
    while next_stored is not None or next_replayed is not None:
        if next_replayed is None or (next_stored is not None and next_stored[0] < next_replayed[0]):
            assert next_stored is not None
            yield next_stored[0], next_stored[1], None
            next_stored = next(stored, None)
        elif next_stored is None or next_replayed[0] < next_stored[0]:
            yield next_replayed[0], None, next_replayed[1]
            next_replayed = next(replayed, None)
        else:
            yield next_stored[0], next_stored[1], next_replayed[1]
            next_stored = next(stored, None)
            next_replayed = next(replayed, None)
