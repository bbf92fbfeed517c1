"""The som ledger: balances, replay references and totals in memory; blocks settle into it.

Theory of operation.
- A block is settled only once consensus decided it, with its commit certificate
  (`apply_block`). Settling returns `BlockEffects`, which the store writes in one LMDB
  transaction; the ledger's memory and the store advance together, one block at a time.
- Validity of a block for consensus (`validate_block`, the answer to CheckValue): its
  header fits the chain (height, previous hash and certificate, app hash, validator set,
  proposer, time, tx root) and every transaction decodes and carries a valid signature of
  a genesis participant. A block with a malformed or badly signed transaction is invalid.
- Business rules are applied deterministically instead: a transaction refused for
  INSUFFICIENT_FUNDS, UNKNOWN_ACCOUNT, NOT_AUTHORIZED, MISADDRESSED or SUPPLY_LIMIT is
  recorded as a refused `TxResult`, consumes its (signer, UETR) and changes no balance;
  the block stays valid, because every honest node reaches the same refusal.
- Exactly once: an ISO 20022 UETR names one payment for ever, so every (signer, UETR)
  a block consumed stays consumed for as long as the chain exists (`References`; the
  node keeps them in LMDB, not in memory). A block is invalid (not merely refused) if
  a transaction in it is expired at the block's height, expires more than
  EXPIRY_HEIGHTS_MAX after it, reuses a consumed (signer, UETR) or shares one with
  another transaction of the block. So every transaction appears in at most one block,
  gets exactly one result, and a stored result is never rewritten. The proposer builds
  only from the mempool, which applies the same rules (`check_admission`).
- Money is integer tyiyn; balances never go negative; outstanding som (issued minus
  redeemed) stays <= 2**63-1, so no balance can overflow; after every block the sum of
  all balances equals issued minus redeemed (asserted).
- App hash chain: app_hash = sha256(tag || previous app hash || height || changes hash ||
  state root), starting from the genesis hash. The changes hash is sha256 of the canonical
  encoding of the block's changes (balances, totals, results); the state root commits to
  the whole state after the block: a Merkle root over every account's balance
  (node/state_tree.py), the count of consumed references and the totals. So any
  divergence changes every later app hash, a node recomputes the state root from its
  stored balances at start (`open_ledger`: a balance edited at rest, checksum fixed up or
  not, is refused), and a bank can check its own balance against an app hash
  (`account_proof`, `verify_account_state`).
- Governance (issue 13, node/governance.py): a `Govern` transaction, signed by the
  issuer and approved by `officer_threshold` distinct genesis officers, admits, suspends
  or reinstates a participant, freezes or unfreezes an account, rotates a key or changes
  the validator set. Its rules are business rules (a refused one is recorded with its
  code); its effects apply at once, within the block, except two: a rotated key signs
  from the next height (signatures of a block are checked before it settles), and a
  validator set decided in block H is in force from H+2 (`validators_at`). The state
  (`GovernanceState`: participants with keys, roles, suspension and addresses, frozen
  accounts, the validator-set schedule) is committed in the state root by its hash,
  stored as one record with the block, and re-checked at open like the balances.
- A suspended participant neither sends (its transactions, pending ones included, are
  refused PARTICIPANT_SUSPENDED at block time) nor receives (a credit to an account it
  owns is refused PARTICIPANT_SUSPENDED, and no money leaves its accounts either: the
  issuer's redeem too). A frozen account's debits are refused ACCOUNT_FROZEN; credits are
  allowed, so money sent to it is never lost or bounced.
- Evidence (issue 13): an `EvidenceTx` puts a proof of equivocation (two conflicting
  votes of one validator) on chain. Its signer must be a validator of the next height.
  Business rules, so a refused one is recorded: both votes must verify against the set of
  their height (`validators_at`, which answers only for recent heights: older evidence
  is refused EVIDENCE_TOO_OLD; EVIDENCE_INVALID otherwise), name one (validator, height,
  round, type) and two values (EVIDENCE_NO_CONFLICT), and that slot's equivocation must
  not be on chain yet (EVIDENCE_DUPLICATE). The slot is remembered as a consumed
  reference under `evidence_key` (no valid id holds a NUL byte, so it never meets a
  (signer, UETR) key): the duplicate rule is part of the state root like every replay.
- Key rotation and pending transactions: a transaction signed by a key that a rotation
  retired, and checked before it (in a pool), may still be proposed for EXPIRY_HEIGHTS_MAX
  heights. So for ROTATION_WINDOW_HEIGHTS after a rotation a block may carry a
  transaction of that signer that verifies with a retired key; it is refused
  BAD_SIGNATURE in the block (the block stays valid, as honest proposers may hold one).
  Outside the window, and for every other signer, a signature that does not verify with
  the current key makes the block invalid.
- Certified blocks in sync (issue 12): a block that comes with its commit certificate,
  verified here against the set in force at its height (`validate_block(certificate=)`),
  is checked in full except for its transactions' Ed25519 signatures. Why that is safe:
  the certificate carries precommits of more than 2/3 of the voting power for this
  block's hash; the hash covers the header, whose tx_root commits to the exact wire bytes
  of every transaction, signatures included. An honest validator precommits only a block
  its own CheckValue found valid, and that checks every signature with the keys in force
  at that height, which are the keys this node holds after the same previous blocks. So
  a certified block with a bad signature exists only if every signer of the certificate
  is faulty: more than 2/3 of the power, far past the < 1/3 that finality (and so every
  node's ledger) already rests on. What a node gives up is detecting, at apply time, that
  such a coalition forged a participant's signature; the bytes are stored as received,
  and `somnet check` (node/check.py) still verifies every signature of the chain. The
  rest is checked as always: header chain, app hash, previous certificate, tx root,
  decoding, expiry and replay rules, and every business rule when applying (including a
  retired key's BAD_SIGNATURE refusal in the rotation window, which changes results).
  Only blocks with a certificate qualify: a proposal being voted on has none, and is
  checked in full (`decode_and_verify`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError

from consensus.config import PROPOSER_WINDOW_HEIGHTS, Validator, ValidatorSet, passed_over
from consensus.crypto import verify_certificate, verify_vote
from consensus.errors import WireError
from consensus.messages import CommitCertificate, Evidence, ValidatorId
from consensus.wire import decode_certificate
from node.block import (
    ZERO_HASH,
    Block,
    Header,
    certificate_hash,
    decode_block,
    decode_block_header,
    encode_block,
)
from node.effects import AccountEntry, BlockEffects, SettledEvidence
from node.errors import BlockError, NodeError, RefusalCode, TxRefused
from node.genesis import Genesis
from node.governance import (
    VALIDATORS_MIN,
    Admit,
    Freeze,
    GovernanceState,
    ParticipantState,
    Reinstate,
    RotateKey,
    SetValidators,
    Suspend,
    Unfreeze,
    approval_message,
    count_approvals,
    decode_governance_state,
    new_key_signed,
)
from node.merkle import merkle_root
from node.state_tree import AccountProof, AccountTree, verify_account_proof
from node.store import Store, StoreCorrupted
from node.tx import (
    AMOUNT_MAX,
    SIGNATURE_SIZE,
    EvidenceTx,
    Govern,
    Issue,
    Payout,
    Redeem,
    Transfer,
    Tx,
    decode_tx,
    remittance_recipients,
    signed_message,
)

__all__ = [
    "EXPIRY_HEIGHTS_MAX",
    "Ledger",
    "MemoryReferences",
    "References",
    "StateProof",
    "StoredReferences",
    "TxResult",
    "app_hash_of",
    "decode_tx_result",
    "evidence_key",
    "genesis_app_hash",
    "open_ledger",
    "state_root_of",
    "verify_account_state",
]

EXPIRY_HEIGHTS_MAX = 10_000
TIME_DRIFT_MS_MAX = 30_000  # how far ahead of our clock a proposer's time_ms may be
TAG_APP_HASH = b"somnet/app-hash/v1"
TAG_GENESIS_APP_HASH = b"somnet/genesis-app-hash/v1"
TAG_EVIDENCE_KEY = b"somnet/evidence-key/v1"
EVIDENCE_KEY_SUFFIX = b"\x00evidence"  # no id holds a NUL: never a (signer, UETR) key
TAG_STATE_ROOT = b"somnet/state-root/v2"  # v2: the governance state joined (issue 13)
# A transaction checked before its signer's key rotated expires within EXPIRY_HEIGHTS_MAX
# heights of the rotation: until then a retired key's signature is a refusal, not a fault.
ROTATION_WINDOW_HEIGHTS = EXPIRY_HEIGHTS_MAX + 2
SCHEDULE_HEIGHTS_BACK = 1  # validators_at answers from height - 1 (sync, certificates)
SCHEDULE_HEIGHTS_AHEAD = 2  # ...to height + 2: a change decided at H is in force at H+2
APPLIED = 0  # TxResult code of an applied transaction
_RESULT = struct.Struct(">BQI")
_NOTHING_CHECKED: Mapping[bytes, Tx] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class TxResult:
    """The outcome of one transaction, stored under its hash.

    Encoding (fixed layout, cheap on the hot path): code (1 byte, 0 = applied), height
    (8 bytes), index (4 bytes), big-endian.
    """

    code: RefusalCode | None  # None: applied
    height: int  # the block that carries it
    index: int  # its position in that block

    def encode(self) -> bytes:
        code = APPLIED if self.code is None else int(self.code)
        return _RESULT.pack(code, self.height, self.index)


def decode_tx_result(data: bytes) -> TxResult:
    """Decode a stored result. Raises NodeError if the record is corrupt."""
    if len(data) != _RESULT.size:
        raise NodeError(f"corrupt tx result: {len(data)} bytes")
    code, height, index = _RESULT.unpack(data)
    try:
        refusal = None if code == APPLIED else RefusalCode(code)
    except ValueError as exc:
        raise NodeError(f"corrupt tx result: unknown code {code}") from exc
    return TxResult(code=refusal, height=height, index=index)


def evidence_key(evidence: Evidence) -> bytes:
    """The reference key that an equivocation's slot (validator, height, round, vote
    type) consumes once it is on chain: the evidence of one slot settles once."""
    vote = evidence.first
    slot = _pack([vote.voter, vote.height, vote.round, int(vote.vote_type)])
    return hashlib.sha256(TAG_EVIDENCE_KEY + slot).digest()[:16] + EVIDENCE_KEY_SUFFIX


def genesis_app_hash(genesis: Genesis) -> bytes:
    return hashlib.sha256(TAG_GENESIS_APP_HASH + genesis.hash()).digest()


def state_root_of(
    *,
    accounts_root: bytes,
    reference_count: int,
    issued_total: int,
    redeemed_total: int,
    governance_hash: bytes,
) -> bytes:
    """The commitment to the whole ledger state after a block. `governance_hash`:
    sha256 of the governance state record (node/governance.py GovernanceState)."""
    assert len(accounts_root) == 32
    assert len(governance_hash) == 32
    assert 0 <= reference_count < 2**64
    assert 0 <= redeemed_total <= issued_total < 2**128
    return hashlib.sha256(
        TAG_STATE_ROOT
        + accounts_root
        + reference_count.to_bytes(8, "big")
        + issued_total.to_bytes(16, "big")
        + redeemed_total.to_bytes(16, "big")
        + governance_hash
    ).digest()


def app_hash_of(
    *, previous_app_hash: bytes, height: int, changes_hash: bytes, state_root: bytes
) -> bytes:
    """The app hash after block `height`; block `height + 1` carries it in its header."""
    assert len(previous_app_hash) == len(changes_hash) == len(state_root) == 32
    return hashlib.sha256(
        TAG_APP_HASH + previous_app_hash + height.to_bytes(8, "big") + changes_hash + state_root
    ).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class StateProof:
    """That an account held a balance after block `height`: everything a bank needs to
    recompute the app hash from its own balance (see `verify_account_state`)."""

    height: int
    account: AccountProof
    accounts_root: bytes
    reference_count: int
    issued_total: int
    redeemed_total: int
    governance_hash: bytes  # sha256 of the governance state record
    previous_app_hash: bytes  # the app hash in block `height`'s header
    changes_hash: bytes
    app_hash: bytes  # after block `height`; block `height + 1`'s header carries it


def verify_account_state(proof: StateProof, app_hash: bytes) -> bool:
    """True if `proof` shows its account's balance under `app_hash`, which the caller
    trusts (the header of block `proof.height + 1`, or the app hash several nodes report).
    Never raises on a malformed proof."""
    try:
        state_root = state_root_of(
            accounts_root=proof.accounts_root,
            reference_count=proof.reference_count,
            issued_total=proof.issued_total,
            redeemed_total=proof.redeemed_total,
            governance_hash=proof.governance_hash,
        )
        recomputed = app_hash_of(
            previous_app_hash=proof.previous_app_hash,
            height=proof.height,
            changes_hash=proof.changes_hash,
            state_root=state_root,
        )
    except (AssertionError, TypeError, OverflowError):
        return False
    return recomputed == app_hash and verify_account_proof(proof.account, proof.accounts_root)


def genesis_governance(genesis: Genesis) -> GovernanceState:
    """The governance state at genesis: its participants, nothing frozen, its validators
    from height 1."""
    return GovernanceState(
        participants=tuple(
            ParticipantState(
                participant_id=p.participant_id,
                name=p.name,
                role=p.role,
                public_key=p.public_key,
                peer_address=p.peer_address,
                api_address=p.api_address,
                suspended=False,
                key_height=0,
                retired_keys=(),
            )
            for p in genesis.participants
        ),
        frozen=(),
        schedule=((1, genesis.validator_set()),),
    )


def _in_force(schedule: tuple[tuple[int, ValidatorSet], ...], height: int) -> ValidatorSet:
    """The set of `schedule` in force at `height`: its last entry from `height` or before."""
    in_force: ValidatorSet | None = None
    for from_height, validators in schedule:
        if from_height > height:
            break
        in_force = validators
    assert in_force is not None  # the first entry is from height 1 (genesis), or kept
    return in_force


class References(Protocol):
    """The consumed (signer, UETR) references: reference key -> the tx hash that holds it."""

    def lookup(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The holding tx hash of each key, None where the key is not consumed."""
        ...

    def record(self, added: Sequence[tuple[bytes, bytes]]) -> None:
        """Remember (key, tx hash) pairs a settled block consumed."""
        ...


class MemoryReferences:
    """References in a dict: for a ledger without a store (tests, `somnet check`)."""

    def __init__(self) -> None:
        self.consumed: dict[bytes, bytes] = {}

    def lookup(self, keys: Sequence[bytes]) -> list[bytes | None]:
        get = self.consumed.get
        return [get(key) for key in keys]

    def record(self, added: Sequence[tuple[bytes, bytes]]) -> None:
        for key, tx_hash in added:
            assert key not in self.consumed
            self.consumed[key] = tx_hash


class StoredReferences:
    """References read from the store, which holds every one ever consumed.

    `record` has nothing to do: the store writes a block's references in the block's own
    write transaction (`Store.commit_block`), which the node runs right after settling,
    before anything looks up a reference again."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def lookup(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._store.load_references(keys)

    def record(self, added: Sequence[tuple[bytes, bytes]]) -> None:
        pass


_PACKER = msgpack.Packer(use_bin_type=True)  # reused; pack() runs in C under the GIL


def _pack(obj: object) -> bytes:
    packed = _PACKER.pack(obj)
    assert isinstance(packed, bytes)
    return packed


class Ledger:
    """In-memory ledger state after the last settled block. Single owner, not thread-safe."""

    def __init__(self, genesis: Genesis, references: References | None = None) -> None:
        """The state at genesis (height 0). Use `restore` to continue from a store.

        Args:
            references: where consumed references live; a fresh dict by default."""
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.issuer_id = genesis.issuer.participant_id
        self.officers = {o.officer_id: o.public_key for o in genesis.officers}
        self.officer_threshold = genesis.officer_threshold
        self._owners = {a.account_id: a.owner for a in genesis.accounts}
        self.balances: dict[str, int] = dict.fromkeys(self._owners, 0)
        self.height = 0
        self._governance_changed = False
        self._set_governance(genesis_governance(genesis))
        for account_id, amount in genesis.issuance:
            self.balances[account_id] += amount
        self.issued_total = sum(amount for _, amount in genesis.issuance)
        self.redeemed_total = 0
        self.block_hash = ZERO_HASH  # hash of the last settled block
        self.time_ms = 0  # time of the last settled block
        self.app_hash = genesis_app_hash(genesis)
        self.previous_app_hash = self.app_hash  # the app hash in the last block's header
        self.changes_hash = bytes(32)  # of the last settled block
        self.account_tree = AccountTree(self.balances)
        self.reference_count = 0
        # Transactions a settled block carried but refused, by code (since this process
        # started): counted only on refusal, read when metrics are scraped.
        self.block_refusals: collections.Counter[int] = collections.Counter()
        self.evidence_settled = 0  # evidence transactions applied since this process started
        # The evidence keys this block consumed so far, and what it settled (`_settle`).
        self._block_evidence: dict[bytes, bytes] = {}
        self._settled_evidence: list[SettledEvidence] = []
        self.references: References = MemoryReferences() if references is None else references
        # The last block that passed validate_block: (its hash, its decoded transactions).
        self._decoded: tuple[bytes, tuple[Tx, ...]] | None = None
        self._changes_since_full_check = 0  # balance changes since the last full sum
        # The precommit signers of the certificates the latest blocks carried (block k+1
        # carries k's), oldest first: the proposer order's input (`passed_over_next`).
        # Every node that settled the same blocks holds the same ones, whatever
        # certificate it decided each block with itself.
        self.carried_signers: collections.deque[frozenset[ValidatorId]] = collections.deque(
            maxlen=PROPOSER_WINDOW_HEIGHTS
        )
        self.check_conservation()

    @classmethod
    def restore(
        cls,
        genesis: Genesis,
        *,
        last_block_bytes: bytes | None,
        app_hash: bytes,
        changes_hash: bytes,
        balances: dict[str, int],
        references: References,
        reference_count: int,
        issued_total: int,
        redeemed_total: int,
        governance: bytes | None = None,
    ) -> Ledger:
        """Rebuild the ledger from what the store loaded at open, and check it: the state
        root recomputed from these balances, references and totals must give `app_hash`.

        Args:
            last_block_bytes: the highest stored block, None if no block was settled.
            app_hash: the app hash stored with that block.
            changes_hash: the hash of that block's changes, stored with it.
            balances: every balance the store holds (accounts it lacks keep genesis values).
            references: the consumed (signer, UETR) references, as stored.
            reference_count: how many references the store holds.
            governance: the stored governance state record; None if no block changed
                the genesis one.
        Raises:
            StoreCorrupted: the stored state is not the state the app hash commits to.
            NodeError: the stored state does not fit the genesis (another network's store).
        """
        ledger = cls(genesis, references)
        if last_block_bytes is None:
            return ledger
        header = decode_block_header(last_block_bytes)
        if header.chain_id != genesis.chain_id:
            raise NodeError(f"store holds chain {header.chain_id!r}, not {genesis.chain_id!r}")
        ledger.height = header.height
        if governance is not None:
            try:
                state = decode_governance_state(governance)
            except ValueError as exc:
                raise StoreCorrupted(f"the stored governance state does not decode: {exc}") from exc
            ledger._set_governance(state)
        unknown = set(balances) - set(ledger.balances)
        if unknown:
            raise NodeError(f"store holds an account not in genesis: {min(unknown)!r}")
        ledger.balances.update(balances)
        ledger.issued_total = issued_total
        ledger.redeemed_total = redeemed_total
        ledger.block_hash = header.hash()
        ledger.time_ms = header.time_ms
        ledger.reference_count = reference_count
        ledger.account_tree = AccountTree(ledger.balances)
        ledger._refresh_validator_set()
        ledger.previous_app_hash = header.app_hash
        ledger.changes_hash = changes_hash
        ledger.app_hash = ledger._app_hash_after(header.height, changes_hash)
        if ledger.app_hash != app_hash:
            raise StoreCorrupted(
                f"the stored state at height {header.height} is not the one its app hash "
                "commits to: a balance, total, consumed reference, participant, frozen "
                "account or validator set was altered; run "
                "`somnet check` to find it"
            )
        ledger.check_conservation()
        return ledger

    def state_root(self) -> bytes:
        return state_root_of(
            accounts_root=self.account_tree.root,
            reference_count=self.reference_count,
            issued_total=self.issued_total,
            redeemed_total=self.redeemed_total,
            governance_hash=self.governance_hash,
        )

    def _app_hash_after(self, height: int, changes_hash: bytes) -> bytes:
        return app_hash_of(
            previous_app_hash=self.previous_app_hash,
            height=height,
            changes_hash=changes_hash,
            state_root=self.state_root(),
        )

    def account_proof(self, account_id: str) -> StateProof:
        """A bank's proof of its balance after the last settled block.
        Raises UnknownAccountError (a NodeError) for an account not in genesis."""
        return StateProof(
            height=self.height,
            account=self.account_tree.proof(account_id),
            accounts_root=self.account_tree.root,
            reference_count=self.reference_count,
            issued_total=self.issued_total,
            redeemed_total=self.redeemed_total,
            governance_hash=self.governance_hash,
            previous_app_hash=self.previous_app_hash,
            changes_hash=self.changes_hash,
            app_hash=self.app_hash,
        )

    def check_conservation(self) -> None:
        """Assert the ledger's invariant, in full: the sum of all balances is issued minus
        redeemed. O(accounts); every block checks it incrementally (see `_settle`)."""
        assert sum(self.balances.values()) == self.issued_total - self.redeemed_total
        assert 0 <= self.issued_total - self.redeemed_total <= AMOUNT_MAX
        self._changes_since_full_check = 0

    def owner_of(self, account_id: str) -> str | None:
        return self._owners.get(account_id)

    # -----------------------------------------------------------------------------------
    # Governance state.

    def _set_governance(self, state: GovernanceState) -> None:
        """Install a new governance state and what is derived from it. Each derived
        mapping is replaced, never changed in place: `decode_and_verify` may read them
        from a worker thread."""
        self.governance = state
        self.governance_hash = hashlib.sha256(state.encode()).digest()
        participants = {p.participant_id: p for p in state.participants}
        self.participants: Mapping[str, ParticipantState] = MappingProxyType(participants)
        self._public_keys: Mapping[str, bytes] = MappingProxyType(
            {pid: p.public_key for pid, p in participants.items()}
        )
        self._rotated_at: Mapping[str, int] = MappingProxyType(
            {pid: p.key_height for pid, p in participants.items() if p.key_height > 0}
        )
        self._suspended = frozenset(pid for pid, p in participants.items() if p.suspended)
        self.frozen = frozenset(state.frozen)
        used = set(self.officers.values())
        for p in state.participants:
            used.add(p.public_key)
            used.update(p.retired_keys)
        self._used_keys = frozenset(used)
        added = [pid for pid in participants if pid not in self._owners]
        for pid in added:  # an admitted participant's main account
            self._owners[pid] = pid
            self.balances[pid] = 0
        if added and hasattr(self, "account_tree"):
            self.account_tree = AccountTree(self.balances)
        self._refresh_validator_set()

    def _refresh_validator_set(self) -> None:
        """The set of the next height: the one its block's header names."""
        self.validator_set = _in_force(self.governance.schedule, self.height + 1)
        self.validator_set_hash = self.validator_set.hash()
        self.next_validator_set = _in_force(self.governance.schedule, self.height + 2)
        self.next_validator_set_hash = self.next_validator_set.hash()

    def validators_at(self, height: int) -> ValidatorSet:
        """The validator set in force at `height`, for heights from the last settled
        height - 1 to + 2 (a change decided in block H is in force from H+2, so the set of
        H+2 is known once H settled).

        Raises:
            NodeError: a height outside that range (not kept, or not decided yet).
        """
        low = max(1, self.height - SCHEDULE_HEIGHTS_BACK)
        if not low <= height <= self.height + SCHEDULE_HEIGHTS_AHEAD:
            raise NodeError(
                f"the validator set of height {height} is not known at height {self.height}"
            )
        return _in_force(self.governance.schedule, height)

    def passed_over_next(self) -> frozenset[ValidatorId]:
        """The proposer order's input for the next height (consensus.config.passed_over),
        from the certificates carried in the blocks settled so far."""
        return passed_over(self.validators_at(self.height + 1), self.carried_signers)

    def restore_carried(self, blocks: Sequence[bytes | None]) -> None:
        """Take the carried certificates from the stored blocks up to the last settled
        one (oldest first), as settling them did (`open_ledger`, at start).

        Raises:
            StoreCorrupted: a stored block is missing or does not decode.
        """
        for data in blocks:
            if data is None:
                raise StoreCorrupted(f"a block below height {self.height} is missing")
            try:
                block = decode_block(data)
            except BlockError as exc:
                raise StoreCorrupted(f"a stored block does not decode: {exc}") from exc
            self._note_carried(block)

    def _note_carried(self, block: Block) -> None:
        if block.prev_certificate is not None:
            voters = frozenset(vote.voter for vote in block.prev_certificate.precommits)
            self.carried_signers.append(voters)

    def participant(self, participant_id: str) -> ParticipantState | None:
        return self.participants.get(participant_id)

    def role_of(self, participant_id: str) -> str:
        """The participant's role now ("issuer", "validator", "bank"), "suspended" while
        it is, or "follower" while the ledger does not know it (not admitted yet)."""
        participant = self.participants.get(participant_id)
        if participant is None:
            return "follower"
        return "suspended" if participant.suspended else participant.role

    def validates(self, participant_id: str) -> bool:
        """Whether it is in the validator set of the next height."""
        return self.validator_set.get(ValidatorId(participant_id)) is not None

    def public_key_of(self, participant_id: str) -> bytes | None:
        """The key that signs the participant's transactions at the next height."""
        return self._public_keys.get(participant_id)

    def _govern_refusal(self, tx: Govern) -> RefusalCode | None:
        """The rule of a governance transaction against the state now (see
        node/governance.py for the actions)."""
        if tx.signer != self.issuer_id:
            return RefusalCode.NOT_AUTHORIZED
        action = tx.action
        message = approval_message(self.chain_id, tx.uetr, tx.expiry_height, action)
        if count_approvals(message, tx.approvals, self.officers) < self.officer_threshold:
            return RefusalCode.GOV_NOT_APPROVED
        participants = self.participants
        if type(action) is Admit:
            pid = action.participant_id
            if pid in participants or pid in self._owners or pid in self.officers:
                return RefusalCode.GOV_PARTICIPANT_EXISTS
            if action.public_key in self._used_keys:
                return RefusalCode.GOV_KEY_IN_USE
            return None
        if type(action) is Suspend or type(action) is Reinstate:
            target = participants.get(action.participant_id)
            if target is None:
                return RefusalCode.GOV_UNKNOWN_PARTICIPANT
            if target.participant_id == self.issuer_id:
                return RefusalCode.GOV_NOT_ELIGIBLE
            if target.suspended == (type(action) is Suspend):
                return RefusalCode.GOV_NO_CHANGE
            return None
        if type(action) is Freeze or type(action) is Unfreeze:
            if action.account not in self._owners:
                return RefusalCode.UNKNOWN_ACCOUNT
            if (action.account in self.frozen) == (type(action) is Freeze):
                return RefusalCode.GOV_NO_CHANGE
            return None
        if type(action) is RotateKey:
            if action.participant_id not in participants:
                return RefusalCode.GOV_UNKNOWN_PARTICIPANT
            if not new_key_signed(action, message):
                return RefusalCode.GOV_NEW_KEY_UNSIGNED
            if action.new_public_key in self._used_keys:
                return RefusalCode.GOV_KEY_IN_USE
            return None
        assert type(action) is SetValidators
        for pid, _ in action.validators:
            target = participants.get(pid)
            if target is None:
                return RefusalCode.GOV_UNKNOWN_PARTICIPANT
            if target.role == "bank" or target.suspended:
                return RefusalCode.GOV_NOT_ELIGIBLE
        if len(action.validators) < VALIDATORS_MIN and not action.allow_below_four:
            return RefusalCode.GOV_TOO_FEW_VALIDATORS
        return None

    def _govern(self, tx: Govern, height: int) -> None:
        """Apply a governance action that `_govern_refusal` accepted, in block `height`."""
        action = tx.action
        state = self.governance
        participants = {p.participant_id: p for p in state.participants}
        frozen = set(state.frozen)
        schedule = dict(state.schedule)
        in_force_from = height + SCHEDULE_HEIGHTS_AHEAD
        if type(action) is Admit:
            participants[action.participant_id] = ParticipantState(
                participant_id=action.participant_id,
                name=action.name,
                role=action.role,
                public_key=action.public_key,
                peer_address=action.peer_address,
                api_address=action.api_address,
                suspended=False,
                key_height=0,
                retired_keys=(),
            )
        elif type(action) is Suspend or type(action) is Reinstate:
            target = participants[action.participant_id]
            participants[target.participant_id] = dataclasses.replace(
                target, suspended=type(action) is Suspend
            )
        elif type(action) is Freeze:
            frozen.add(action.account)
        elif type(action) is Unfreeze:
            frozen.discard(action.account)
        elif type(action) is RotateKey:
            target = participants[action.participant_id]
            participants[target.participant_id] = dataclasses.replace(
                target,
                public_key=action.new_public_key,
                key_height=height + 1,
                retired_keys=(*target.retired_keys, target.public_key),
            )
            # A validator's consensus key changes with the set of H+2, like any change.
            validators = _in_force(tuple(sorted(schedule.items())), in_force_from)
            if validators.get(ValidatorId(target.participant_id)) is not None:
                schedule[in_force_from] = ValidatorSet(
                    tuple(
                        dataclasses.replace(v, public_key=action.new_public_key)
                        if v.validator_id == target.participant_id
                        else v
                        for v in validators.validators
                    )
                )
        else:
            assert type(action) is SetValidators
            schedule[in_force_from] = ValidatorSet(
                tuple(
                    Validator(
                        validator_id=ValidatorId(pid),
                        public_key=participants[pid].public_key,
                        voting_power=power,
                    )
                    for pid, power in action.validators
                )
            )
        self._set_governance(
            GovernanceState(
                participants=tuple(participants[pid] for pid in sorted(participants)),
                frozen=tuple(sorted(frozen)),
                schedule=tuple(sorted(schedule.items())),
            )
        )
        self._governance_changed = True

    def _prune_schedule(self, height: int) -> None:
        """Forget the validator sets no height from `height` - SCHEDULE_HEIGHTS_BACK on
        needs: every entry but the last one in force by then, and the later ones."""
        schedule = self.governance.schedule
        oldest = max(1, height - SCHEDULE_HEIGHTS_BACK)
        keep_from = 0
        for index, (from_height, _) in enumerate(schedule):
            if from_height <= oldest:
                keep_from = index
        if keep_from:
            self._set_governance(
                dataclasses.replace(self.governance, schedule=schedule[keep_from:])
            )
            self._governance_changed = True

    def lookup_reference(self, tx: Tx) -> bytes | None:
        """The hash of the transaction that consumed tx's (signer, UETR), if any."""
        return self.references.lookup([tx.uetr + tx.signer.encode()])[0]

    def check_admission(self, tx: Tx) -> None:
        """Every rule the next block applies to `tx` except balances and supply: expiry
        (the block validity rule), accounts, owner, issuer, suspension, frozen accounts,
        and a governance action's approvals and rules. The mempool applies it. Balances
        and supply are left to the block, where the result is recorded; so are the rules
        a governance transaction can change later (suspension, freezes, participants),
        which the block applies again.

        Raises:
            TxRefused: EXPIRED, EXPIRY_TOO_FAR, UNKNOWN_ACCOUNT, NOT_AUTHORIZED,
                MISADDRESSED, PARTICIPANT_SUSPENDED, ACCOUNT_FROZEN, or a GOV_ code.
        """
        next_height = self.height + 1
        if tx.expiry_height < next_height:
            raise TxRefused(RefusalCode.EXPIRED, f"expiry height {tx.expiry_height} has passed")
        if tx.expiry_height > next_height + EXPIRY_HEIGHTS_MAX:
            raise TxRefused(
                RefusalCode.EXPIRY_TOO_FAR,
                f"expiry height {tx.expiry_height} is more than {EXPIRY_HEIGHTS_MAX} "
                f"after the next block {next_height}",
            )
        code = self._static_refusal(tx)
        if code is not None:
            raise TxRefused(code, f"{tx.signer!r} may not send this transaction ({code.name})")

    def _static_refusal(self, tx: Tx) -> RefusalCode | None:
        """The refusal that depends on no balance: accounts, owners, the issuer, the
        governance state, a governance action's approvals and rules."""
        balances = self.balances
        owners = self._owners
        suspended = self._suspended
        if type(tx) is Transfer:
            owner = owners.get(tx.from_account)
            if owner is None or tx.to_account not in balances:
                return RefusalCode.UNKNOWN_ACCOUNT
            if owner != tx.signer:
                return RefusalCode.NOT_AUTHORIZED
            if suspended and (owner in suspended or owners[tx.to_account] in suspended):
                return RefusalCode.PARTICIPANT_SUSPENDED
            if tx.from_account in self.frozen:
                return RefusalCode.ACCOUNT_FROZEN
            return self._misaddressed(tx)
        if type(tx) is Payout:
            owner = owners.get(tx.from_account)
            if owner is None or any(to not in balances for to, _ in tx.legs):
                return RefusalCode.UNKNOWN_ACCOUNT
            if owner != tx.signer:
                return RefusalCode.NOT_AUTHORIZED
            if suspended and (
                owner in suspended or any(owners[to] in suspended for to, _ in tx.legs)
            ):
                return RefusalCode.PARTICIPANT_SUSPENDED
            if tx.from_account in self.frozen:
                return RefusalCode.ACCOUNT_FROZEN
            return self._misaddressed(tx)
        if type(tx) is Govern:
            return self._govern_refusal(tx)
        if type(tx) is EvidenceTx:
            return self._evidence_refusal(tx)
        if tx.signer != self.issuer_id:
            return RefusalCode.NOT_AUTHORIZED
        if type(tx) is Issue:
            owner = owners.get(tx.to_account)
            if owner is None:
                return RefusalCode.UNKNOWN_ACCOUNT
            return RefusalCode.PARTICIPANT_SUSPENDED if owner in suspended else None
        assert type(tx) is Redeem
        owner = owners.get(tx.from_account)
        if owner is None:
            return RefusalCode.UNKNOWN_ACCOUNT
        if owner in suspended:
            return RefusalCode.PARTICIPANT_SUSPENDED
        return RefusalCode.ACCOUNT_FROZEN if tx.from_account in self.frozen else None

    def _evidence_refusal(self, tx: EvidenceTx) -> RefusalCode | None:
        """The rules of an evidence transaction (see the module doc), in the order a
        submitter can fix them: who sends it, whether it proves anything, whether it is
        new."""
        if self.validator_set.get(ValidatorId(tx.signer)) is None:
            return RefusalCode.NOT_AUTHORIZED
        first, second = tx.evidence.first, tx.evidence.second
        slot = (first.voter, first.vote_type, first.height, first.round)
        if slot != (second.voter, second.vote_type, second.height, second.round):
            return RefusalCode.EVIDENCE_NO_CONFLICT
        if first.value_id == second.value_id:
            return RefusalCode.EVIDENCE_NO_CONFLICT
        try:
            validators = self.validators_at(first.height)
        except NodeError:
            return RefusalCode.EVIDENCE_TOO_OLD
        for vote in (first, second):
            if not verify_vote(self.chain_id, vote, validators):
                return RefusalCode.EVIDENCE_INVALID
        key = evidence_key(tx.evidence)
        if key in self._block_evidence or self.references.lookup([key])[0] is not None:
            return RefusalCode.EVIDENCE_DUPLICATE
        return None

    def _misaddressed(self, tx: Transfer | Payout) -> RefusalCode | None:
        """MISADDRESSED unless a sealed remittance goes to exactly the sending bank, the
        issuer and the owners of the credited accounts (node/tx.py); all accounts known."""
        if tx.envelope is None:
            return None
        credited = [tx.to_account] if isinstance(tx, Transfer) else [to for to, _ in tx.legs]
        banks = [self._owners[account] for account in credited]
        required = remittance_recipients(tx.signer, self.issuer_id, banks)
        return None if tx.envelope.recipients == required else RefusalCode.MISADDRESSED

    # -----------------------------------------------------------------------------------
    # Signatures: checked once, before a transaction enters the mempool or a block.

    def check_signature(self, tx: Tx) -> None:
        """Check with the signer's key at the next height (a rotation settled in the last
        block is in force). Raises TxRefused NOT_AUTHORIZED (unknown signer) or
        BAD_SIGNATURE."""
        public_key = self._public_keys.get(tx.signer)
        if public_key is None:
            raise TxRefused(RefusalCode.NOT_AUTHORIZED, f"signer {tx.signer!r} is unknown")
        try:
            crypto_sign_open(signed_message(tx), public_key)
        except (CryptoError, ValueError) as exc:
            raise TxRefused(RefusalCode.BAD_SIGNATURE, f"not signed by {tx.signer!r}") from exc

    def check_tx(self, tx_bytes: bytes) -> Tx:
        """Decode a transaction and verify its signature (the mempool's entry check).
        Raises TxRefused."""
        tx = decode_tx(tx_bytes, self.chain_id)
        self.check_signature(tx)
        return tx

    # -----------------------------------------------------------------------------------
    # Blocks.

    def make_block(
        self,
        txs: Sequence[bytes],
        *,
        time_ms: int,
        proposer: str,
        prev_certificate: CommitCertificate | None,
    ) -> Block:
        """The next block with these (already verified) transactions, for a proposer.
        `time_ms` is raised to the last block's time, so block times never go back."""
        assert (prev_certificate is None) == (self.height == 0)
        header = Header(
            chain_id=self.chain_id,
            height=self.height + 1,
            time_ms=max(time_ms, self.time_ms),
            prev_block_hash=self.block_hash,
            prev_certificate_hash=certificate_hash(prev_certificate),
            tx_root=merkle_root(txs),
            tx_count=len(txs),
            app_hash=self.app_hash,
            proposer=proposer,
            validator_set_hash=self.validator_set_hash,
            next_validator_set_hash=self.next_validator_set_hash,
        )
        return Block(header=header, txs=tuple(txs), prev_certificate=prev_certificate)

    def validate_block(
        self,
        block: Block,
        *,
        now_ms: int | None = None,
        signatures_checked: Mapping[bytes, Tx] = _NOTHING_CHECKED,
        decoded: tuple[Tx, ...] | None = None,
        certificate: CommitCertificate | None = None,
    ) -> None:
        """Check that `block` can follow the last settled block (consensus CheckValue, or
        a block received in sync).

        Args:
            now_ms: this node's clock; when given, a block time more than
                TIME_DRIFT_MS_MAX ahead of it is refused.
            signatures_checked: transactions whose signature this node already verified,
                by tx hash (the mempool's dict). A block transaction with the same wire
                bytes skips the signature check; everything else is still checked. The
                tx hash covers the signed content only, so the wire bytes (signature
                included) must match too: otherwise a proposer could pair a pooled
                transaction's content with a bad signature, and nodes with and without
                it in their pool would disagree on the block.
            decoded: the block's transactions, already decoded and verified by
                `decode_and_verify` (off the event loop); nothing of them is redone.
            certificate: the block's commit certificate, for a decided block received in
                sync. It is verified here (height, block hash, more than 2/3 of the power
                of the set in force at the block's height); then the transactions are
                decoded but their signatures not checked again ("Certified blocks in
                sync" in the module doc says why that is safe). Never for a proposal.
        Raises:
            BlockError: naming the first field or transaction that is wrong, or the
                certificate does not commit this block.
        """
        block_hash = block.header.hash()
        if certificate is not None:
            # First: it is cheap, and only a block it commits may skip the signatures.
            self._check_commits(block, block_hash, certificate)
        self._check_header(block)
        if now_ms is not None and block.header.time_ms > now_ms + TIME_DRIFT_MS_MAX:
            raise BlockError("header time_ms: too far ahead of this node's clock")
        self._check_prev_certificate(block)
        cached = self._decoded
        if cached is None or cached[0] != block_hash:
            if certificate is not None:
                decoded = self._decode_txs(block.txs)
            elif decoded is None:
                decoded = self.decode_and_verify(block.txs, signatures_checked)
            assert len(decoded) == len(block.txs)
            self._check_consumable(decoded, block.header.height)
            self._decoded = (block_hash, decoded)

    def _check_commits(
        self, block: Block, block_hash: bytes, certificate: CommitCertificate
    ) -> None:
        """Raises BlockError unless `certificate` decides `block` (its height and hash)
        with more than 2/3 of the power of the validator set in force at its height."""
        height = block.header.height
        if certificate.height != height or certificate.value_id != block_hash:
            raise BlockError("certificate: does not commit this block")
        if height != self.height + 1:
            raise BlockError(f"header height: does not follow height {self.height}")
        if not verify_certificate(self.chain_id, certificate, self.validators_at(height)):
            raise BlockError("certificate: signatures or voting power do not verify")

    def _check_consumable(self, txs: Sequence[Tx], height: int) -> None:
        """Raises BlockError unless every transaction may be settled at `height`: not
        expired, not too far, and its (signer, UETR) consumed neither before nor twice in
        this block. These make a block invalid, not a transaction refused, so a
        transaction is never settled twice and its stored result never rewritten."""
        expiry_max = height + EXPIRY_HEIGHTS_MAX
        keys: list[bytes] = []
        for index, tx in enumerate(txs):
            if tx.expiry_height < height:
                raise BlockError(f"transaction {index}: expired at height {tx.expiry_height}")
            if tx.expiry_height > expiry_max:
                raise BlockError(
                    f"transaction {index}: expiry more than {EXPIRY_HEIGHTS_MAX} ahead"
                )
            keys.append(tx.uetr + tx.signer.encode())
        if len(set(keys)) != len(keys):
            raise BlockError("two transactions of the block share a (signer, UETR)")
        for index, holder in enumerate(self.references.lookup(keys)):
            if holder is not None:
                raise BlockError(
                    f"transaction {index}: its (signer, UETR) is consumed by tx {holder.hex()}"
                )

    def decode_and_verify(
        self, txs: Sequence[bytes], signatures_checked: Mapping[bytes, Tx]
    ) -> tuple[Tx, ...]:
        """Each transaction decoded once per node: one this node already decoded and
        verified (same wire bytes) is reused as is; any other is decoded and verified.

        Reads the participants' keys, which settling replaces (never changes in place),
        so it may run in a worker thread while the loop goes on (libsodium releases the
        GIL), for the block after the last settled one. A signer whose key rotated within
        ROTATION_WINDOW_HEIGHTS is checked in full even when pooled, and a signature by one
        of its retired keys passes here (the block refuses it BAD_SIGNATURE).
        Raises BlockError naming the first transaction that fails."""
        decoded: list[Tx] = []
        append = decoded.append
        checked = signatures_checked.get if signatures_checked else None
        sha256 = hashlib.sha256
        rotated = self._recently_rotated(self.height + 1)
        for index, tx_bytes in enumerate(txs):
            if checked is not None:
                tx = checked(sha256(tx_bytes[SIGNATURE_SIZE:]).digest())
                if tx is not None and tx.raw == tx_bytes and tx.signer not in rotated:
                    append(tx)
                    continue
            try:
                tx = decode_tx(tx_bytes, self.chain_id)
                if tx.signer in rotated:
                    self._check_signature_rotated(tx)
                else:
                    self.check_signature(tx)
            except TxRefused as exc:
                raise BlockError(f"transaction {index}: {exc}") from exc
            append(tx)
        return tuple(decoded)

    def _recently_rotated(self, height: int) -> frozenset[str]:
        """Signers whose key rotated so recently that a transaction signed by a retired
        key may still be proposed at `height` (see ROTATION_WINDOW_HEIGHTS)."""
        rotated = self._rotated_at
        if not rotated:
            return frozenset()
        return frozenset(
            pid for pid, key_height in rotated.items()
            if height - key_height < ROTATION_WINDOW_HEIGHTS
        )  # fmt: skip

    def _check_signature_rotated(self, tx: Tx) -> None:
        """The signature verifies with the signer's current key or a retired one.
        Raises TxRefused BAD_SIGNATURE otherwise."""
        if _verifies(tx, self._public_keys[tx.signer]):
            return
        if any(_verifies(tx, key) for key in self.participants[tx.signer].retired_keys):
            return
        raise TxRefused(RefusalCode.BAD_SIGNATURE, f"not signed by {tx.signer!r}")

    def _check_header(self, block: Block, *, tx_root_checked: bool = False) -> None:
        """Raises BlockError unless the header follows the last settled block.
        `tx_root_checked`: this block (by hash) already passed validate_block, whose
        Merkle root computation need not be repeated."""
        header = block.header
        checks = (
            (header.chain_id == self.chain_id, "chain_id"),
            (header.height == self.height + 1, "height"),
            (header.prev_block_hash == self.block_hash, "prev_block_hash"),
            (header.app_hash == self.app_hash, "app_hash"),
            (header.validator_set_hash == self.validator_set_hash, "validator_set_hash"),
            (
                header.next_validator_set_hash == self.next_validator_set_hash,
                "next_validator_set_hash",
            ),
            (self.validator_set.get(ValidatorId(header.proposer)) is not None, "proposer"),
            (header.time_ms >= self.time_ms, "time_ms"),
            (header.tx_count == len(block.txs), "tx_count"),
            (tx_root_checked or header.tx_root == merkle_root(block.txs), "tx_root"),
        )
        for ok, field in checks:
            if not ok:
                raise BlockError(f"header {field}: does not follow height {self.height}")

    def _check_prev_certificate(self, block: Block) -> None:
        certificate = block.prev_certificate
        if block.header.prev_certificate_hash != certificate_hash(certificate):
            raise BlockError("header prev_certificate_hash: does not match the certificate")
        if certificate is None:
            if self.height != 0:
                raise BlockError("block: the previous block's certificate is missing")
            return
        if certificate.height != self.height or certificate.value_id != self.block_hash:
            raise BlockError(f"block certificate: does not commit block {self.height}")
        if not verify_certificate(self.chain_id, certificate, self.validators_at(self.height)):
            raise BlockError("block certificate: signatures or voting power do not verify")

    def apply_block(
        self,
        block: Block,
        certificate_bytes: bytes,
        *,
        verified: bool = True,
        block_bytes: bytes | None = None,
        pooled: Mapping[bytes, Tx] | None = None,
    ) -> BlockEffects:
        """Settle a decided block and return what the store must write.

        Args:
            block: the decided block; it must follow the last settled block.
            certificate_bytes: its commit certificate (consensus.wire encoding).
            verified: True when this node already ran `validate_block` on it (consensus
                CheckValue, or a synced block through `validate_block(certificate=)`):
                its decoded transactions and checked Merkle root are reused. False for a
                block checked in full here, every transaction's signature and the
                certificate's (`somnet check` re-verifies a chain this way).
            block_bytes: the block's encoding, when the caller has it (saves re-encoding).
            pooled: transactions this node already decoded, by tx hash (its mempool):
                one with the very same wire bytes is reused rather than decoded again
                (a proposer settling its own block decoded every one of them already).
        Raises:
            BlockError: the block or certificate does not fit; the ledger is unchanged.
        """
        block_hash = block.header.hash()
        certificate = self._decode_certificate(certificate_bytes, block, block_hash)
        if not verified:
            self.validate_block(block)
            if not verify_certificate(self.chain_id, certificate, self.validator_set):
                raise BlockError("certificate: signatures or voting power do not verify")
        cached = self._decoded
        if cached is not None and cached[0] == block_hash:
            # validate_block ran on this very block (same hash) against this state.
            self._check_header(block, tx_root_checked=True)
            txs = cached[1]
        else:
            # The caller vouches for the signatures; everything else is checked here.
            self._check_header(block)
            txs = self._decode_txs(block.txs, pooled)
            self._check_consumable(txs, block.header.height)
        effects = self._settle(block, txs, block_hash, certificate_bytes, block_bytes)
        self._decoded = None
        return effects

    def _decode_txs(
        self, txs: Sequence[bytes], pooled: Mapping[bytes, Tx] | None = None
    ) -> tuple[Tx, ...]:
        """Decoding is a pure function of (bytes, chain id), so a pooled transaction with
        the same wire bytes is what decoding them again would give."""
        decoded: list[Tx] = []
        known = pooled.get if pooled else None
        sha256 = hashlib.sha256
        for index, tx_bytes in enumerate(txs):
            if known is not None:
                tx = known(sha256(tx_bytes[SIGNATURE_SIZE:]).digest())
                if tx is not None and tx.raw == tx_bytes:
                    decoded.append(tx)
                    continue
            try:
                decoded.append(decode_tx(tx_bytes, self.chain_id))
            except TxRefused as exc:
                raise BlockError(f"transaction {index}: {exc}") from exc
        return tuple(decoded)

    def _decode_certificate(
        self, certificate_bytes: bytes, block: Block, block_hash: bytes
    ) -> CommitCertificate:
        try:
            certificate = decode_certificate(certificate_bytes)
        except WireError as exc:
            raise BlockError(f"certificate: {exc}") from exc
        if certificate.height != block.header.height or certificate.value_id != block_hash:
            raise BlockError("certificate: does not commit this block")
        return certificate

    def _settle(
        self,
        block: Block,
        txs: tuple[Tx, ...],
        block_hash: bytes,
        certificate_bytes: bytes,
        block_bytes: bytes | None,
    ) -> BlockEffects:
        height = block.header.height
        # Each changed account's balance before and after this block. `after` repeats
        # what `self.balances` holds, in a small dict that is cheap to read back.
        before: dict[str, int] = {}
        after: dict[str, int] = {}
        results: list[tuple[bytes, bytes]] = []
        added: list[tuple[bytes, bytes]] = []
        entries: list[AccountEntry] = []
        supply_before = self.issued_total - self.redeemed_total
        self._apply_txs(txs, height, before, after, results, added, entries)
        assert len(results) == len(txs)  # one result per tx
        # One reference per tx, and one per applied evidence's slot.
        added.extend(self._block_evidence.items())
        assert len(added) == len(txs) + len(self._settled_evidence)
        settled_evidence = tuple(self._settled_evidence)
        self._block_evidence = {}
        self._settled_evidence = []
        self.references.record(added)
        self._check_block_conservation(before, after, supply_before)
        # Account order makes the encoding canonical; the store writes in this order too.
        accounts = sorted(after)
        balances = tuple(zip(accounts, [after[account] for account in accounts], strict=True))
        # msgpack encodes tuples as arrays: no per-item copies on this path.
        changes = (height, balances, self.issued_total, self.redeemed_total, results)
        changes_hash = hashlib.sha256(_pack(changes)).digest()
        self.account_tree.update(balances)
        self.reference_count += len(added)
        self._prune_schedule(height)
        self.previous_app_hash = self.app_hash
        self.changes_hash = changes_hash
        self.app_hash = self._app_hash_after(height, changes_hash)
        self.height = height
        self.block_hash = block_hash
        self.time_ms = block.header.time_ms
        # The header named the set of the next height; kept when it is a new one, so a
        # proof can lead a verifier from genesis across every change (node/inclusion.py).
        set_change = None
        if block.header.next_validator_set_hash != block.header.validator_set_hash:
            set_change = self.next_validator_set.encode()
        self._note_carried(block)
        self._refresh_validator_set()
        governance = self.governance.encode() if self._governance_changed else None
        self._governance_changed = False
        return BlockEffects(
            height=height,
            block_hash=block_hash,
            block_bytes=encode_block(block) if block_bytes is None else block_bytes,
            certificate_bytes=certificate_bytes,
            app_hash=self.app_hash,
            changes_hash=changes_hash,
            balances=balances,
            tx_results=tuple(results),
            references_added=tuple(added),
            account_entries=tuple(entries),
            issued_total=self.issued_total,
            redeemed_total=self.redeemed_total,
            governance=governance,
            evidence=settled_evidence,
            validator_set_change=set_change,
        )

    def _check_block_conservation(
        self, before: dict[str, int], after: dict[str, int], supply_before: int
    ) -> None:
        """Conservation after every block, in O(changed accounts): the block's balance
        changes sum to its net issuance, and no balance is negative. By induction from the
        full sum at genesis or restore, the sum of all balances is still issued minus
        redeemed. A full O(accounts) sum still runs whenever as many changes as there
        are accounts accumulated (at most one extra addition per change), so a balance
        changed without being recorded (and so never stored) cannot go unnoticed."""
        assert after.keys() == before.keys()
        assert min(after.values(), default=0) >= 0
        delta = sum(after.values()) - sum(before.values())
        supply = self.issued_total - self.redeemed_total
        assert delta == supply - supply_before, (delta, supply, supply_before)
        assert 0 <= supply <= AMOUNT_MAX
        self._changes_since_full_check += len(after)
        if self._changes_since_full_check >= len(self.balances):
            self.check_conservation()

    def _apply_txs(
        self,
        txs: Iterable[Tx],
        height: int,
        before: dict[str, int],
        after: dict[str, int],
        results: list[tuple[bytes, bytes]],
        added: list[tuple[bytes, bytes]],
        entries: list[AccountEntry],
    ) -> None:
        """The hot path: one rule, one small encoding per transaction; `_check_consumable`
        already passed. A transfer is applied inline (the common case, without a call per
        rule). Each applied transaction adds one statement entry per account it moves."""
        balances = self.balances
        owners = self._owners
        pack_result = _RESULT.pack
        add_entry = entries.append
        # Governance state a transfer reads; empty (so one falsy test) on most networks.
        # A govern transaction may change it: read again after each non-transfer.
        suspended, frozen = self._suspended, self.frozen
        rotated = self._recently_rotated(height)
        keys = self._public_keys  # as this block's signatures were checked: a rotation
        # settled within the block is in force from the next one
        for index, tx in enumerate(txs):
            code: int
            if type(tx) is Transfer:  # one unpacking instead of an attribute load each
                _, tx_hash, signer, uetr, _, from_account, to_account, amount, envelope = tx
                owner = owners.get(from_account)
                to_balance = balances.get(to_account)
                if owner is None or to_balance is None:
                    code = RefusalCode.UNKNOWN_ACCOUNT
                elif owner != signer:
                    code = RefusalCode.NOT_AUTHORIZED
                elif rotated and signer in rotated and not _verifies(tx, keys[signer]):
                    code = RefusalCode.BAD_SIGNATURE  # a retired key's (see the module doc)
                elif suspended and (owner in suspended or owners[to_account] in suspended):
                    code = RefusalCode.PARTICIPANT_SUSPENDED
                elif frozen and from_account in frozen:
                    code = RefusalCode.ACCOUNT_FROZEN
                elif envelope is not None and self._misaddressed(tx) is not None:
                    code = RefusalCode.MISADDRESSED
                elif (from_balance := balances[from_account]) < amount:
                    code = RefusalCode.INSUFFICIENT_FUNDS
                else:
                    if from_account not in before:
                        before[from_account] = from_balance
                    if to_account not in before:
                        before[to_account] = to_balance
                    balances[from_account] = after[from_account] = from_balance - amount
                    balances[to_account] = after[to_account] = to_balance + amount
                    add_entry(
                        AccountEntry(from_account, index, tx_hash, -amount, from_balance - amount)
                    )
                    add_entry(AccountEntry(to_account, index, tx_hash, amount, to_balance + amount))
                    code = APPLIED
            else:
                tx_hash, signer, uetr = tx.tx_hash, tx.signer, tx.uetr
                if rotated and signer in rotated and not _verifies(tx, keys[signer]):
                    refusal: RefusalCode | None = RefusalCode.BAD_SIGNATURE
                else:
                    refusal = self._execute(tx, index, height, before, after, entries)
                code = APPLIED if refusal is None else refusal
                suspended, frozen = self._suspended, self.frozen
            if code:  # APPLIED is 0: one test per transaction, a count only on refusal
                self.block_refusals[code] += 1
            added.append((uetr + signer.encode(), tx_hash))
            results.append((tx_hash, pack_result(code, height, index)))

    def _execute(
        self,
        tx: Tx,
        index: int,
        height: int,
        before: dict[str, int],
        after: dict[str, int],
        entries: list[AccountEntry],
    ) -> RefusalCode | None:
        """Apply one transaction's business rule; None if applied, else why refused.
        (Transfers are applied inline in `_apply_txs`.) An applied one adds one entry per
        account it moves: a payout's legs to one account add up to one entry."""
        assert type(tx) is not Transfer
        refusal = self._static_refusal(tx)
        if refusal is not None:
            return refusal
        if type(tx) is Govern:
            self._govern(tx, height)  # moves no money
            return None
        if type(tx) is EvidenceTx:
            key = evidence_key(tx.evidence)
            assert key not in self._block_evidence  # _evidence_refusal refused a repeat
            self._block_evidence[key] = tx.tx_hash
            vote = tx.evidence.first
            settled = SettledEvidence(vote.height, vote.voter, tx.evidence_bytes, tx.tx_hash)
            self._settled_evidence.append(settled)
            self.evidence_settled += 1
            return None
        balances = self.balances
        changes: list[tuple[str, int]] = []  # (account, amount added), all or nothing
        if type(tx) is Payout:
            if balances[tx.from_account] < tx.total:
                return RefusalCode.INSUFFICIENT_FUNDS
            changes.append((tx.from_account, -tx.total))
            changes.extend(tx.legs)
        elif type(tx) is Issue:
            if self.issued_total - self.redeemed_total + tx.amount > AMOUNT_MAX:
                return RefusalCode.SUPPLY_LIMIT
            changes.append((tx.to_account, tx.amount))
            self.issued_total += tx.amount
        else:
            assert type(tx) is Redeem
            if balances[tx.from_account] < tx.amount:
                return RefusalCode.INSUFFICIENT_FUNDS
            changes.append((tx.from_account, -tx.amount))
            self.redeemed_total += tx.amount
        deltas: dict[str, int] = {}  # per account, in the order the changes name them
        for account, amount in changes:
            balance = balances[account]
            before.setdefault(account, balance)
            balances[account] = after[account] = balance + amount
            deltas[account] = deltas.get(account, 0) + amount
        for account, delta in deltas.items():
            assert delta != 0  # amounts are positive and no leg pays the payer
            entries.append(AccountEntry(account, index, tx.tx_hash, delta, balances[account]))
        return None


def _verifies(tx: Tx, public_key: bytes) -> bool:
    try:
        crypto_sign_open(signed_message(tx), public_key)
    except (CryptoError, ValueError):
        return False
    return True


def open_ledger(genesis: Genesis, store: Store) -> Ledger:
    """The ledger after the store's last block: the node's (and the bench's) restore path."""
    tip = store.tip
    ledger = Ledger.restore(
        genesis,
        last_block_bytes=store.load_block(tip.height) if tip.height else None,
        app_hash=tip.app_hash,
        changes_hash=tip.changes_hash,
        balances=store.load_balances(),
        references=StoredReferences(store),
        reference_count=store.reference_count(),
        issued_total=tip.issued_total,
        redeemed_total=tip.redeemed_total,
        governance=store.load_governance(),
    )
    first = max(1, tip.height - PROPOSER_WINDOW_HEIGHTS + 1)
    ledger.restore_carried([store.load_block(height) for height in range(first, tip.height + 1)])
    return ledger
