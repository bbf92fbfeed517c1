"""Who calls the bank API: HTTP Message Signatures (RFC 9421) with participants' keys.

Every request is signed by its caller with the Ed25519 key that the ledger holds for the
participant when the request arrives (genesis's, or the one governance admitted or rotated
to since; a supervisor's key is configured on the node instead), so no shared secret or
password exists anywhere, and any HTTP client in a bank's own language can make one:

    Content-Digest: sha-256=:<base64 of SHA-256 of the body, also of an empty one>:
    Signature-Input: somnet=("@method" "@path" "@query" "content-digest");created=1767225600;
        keyid="bank-a";nonce="<16..128 characters>";alg="ed25519"    (all on one line)
    Signature: somnet=:<base64 of the Ed25519 signature over the RFC 9421 signature base>:

The covered components are at least these four (method, path, query, the body's digest:
sha-256 as above, or sha-512; every digest given must match), `created` is Unix seconds
within `signature_age_s_max` of the node's clock (and at most 5 s ahead of it), and the
nonce makes each signed request single-use: the node remembers every nonce it accepted
until the signature it came with is too old to be accepted anyway. A request carries one
signature (one label); a keyid is a participant or a configured supervisor, never
both (node/main.py refuses such a configuration).

The path and query the signature is checked against are the request target exactly as
received, and only it: the Host header is not signed and takes no part, so that no Host
value can move where the library sees the path end (a `#` or `/` in it once let a signed
GET of one resource be replayed against another). A target that is not a path (the
absolute form, `*`) is refused.

Refusals (401): SIGNATURE_MISSING, SIGNATURE_INVALID (malformed, unknown keyid, wrong
components, wrong digest, a bad signature), SIGNATURE_STALE, SIGNATURE_REPLAYED.
Then per participant: RATE_LIMITED (429, more than `requests_per_s_max` requests a second)
and TOO_MANY_WAITS (429, more than `waits_max` long polls and streams open at once).
A replayed or refused request costs its participant none of its rate.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)
from http_message_signatures.algorithms import ED25519

from node.api_server import bounded, json_error

__all__ = [
    "CALLER",
    "COVERED_COMPONENTS",
    "SIGNATURE_LABEL",
    "AuthLimits",
    "Authenticator",
    "Caller",
    "caller_of",
]

SIGNATURE_LABEL = "somnet"
COVERED_COMPONENTS = ("@method", "@path", "@query", "content-digest")
NONCE_CHARS_MIN = 16
NONCE_CHARS_MAX = 128
CLOCK_SKEW_S = 5  # how far ahead of the node's clock `created` may be
# Only the path and query are signed; the authority the library parses is this fixed name.
SIGNED_AUTHORITY = "http://somnet"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated participant (or supervisor) and what it may read."""

    participant_id: str
    reads_all: bool
    """The central bank (issuer) and configured supervisors read every account and
    transaction; everyone else reads only their own."""


CALLER = web.RequestKey("caller", Caller)


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthLimits:
    signature_age_s_max: int = 60
    """How old a signature's `created` may be; nonces are remembered this long."""
    requests_per_s_max: int = 500
    """Requests a second per participant (a burst of one second's worth is allowed)."""
    waits_max: int = 16
    """Long polls (wait_ms > 0) and event streams one participant may hold open."""


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _ReceivedRequest:
    """The view of a received request the signature library reads."""

    def __init__(self, method: str, url: str, fields: list[tuple[str, str]]) -> None:
        self.method = method
        self.url = url
        self.headers = _Fields(fields)


class _Fields:
    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields

    def items(self) -> Iterable[tuple[str, str]]:
        return self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._fields))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._fields)


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, judging `created` and `expires` by the node's own clock
    (which tests inject), not by the library's reading of the system clock: one clock
    decides both the future bound here and the age bound in Authenticator."""

    def __init__(self, now_s: Callable[[], float], resolver: HTTPSignatureKeyResolver) -> None:
        super().__init__(signature_algorithm=ED25519, key_resolver=resolver)
        self._now_s = now_s

    def validate_created_and_expires(self, sig_input: Any, max_age: object = None) -> None:
        assert max_age is None  # the age is checked by Authenticator, with its own code
        now_s = self._now_s()
        created_s = sig_input.params.get("created")
        if type(created_s) is not int:
            raise InvalidSignature('the signature needs an integer "created" (Unix seconds)')
        if created_s > now_s + CLOCK_SKEW_S:
            raise InvalidSignature(
                f'"created" is more than {CLOCK_SKEW_S} s ahead of the node\'s clock'
            )
        expires_s = sig_input.params.get("expires")
        if expires_s is not None and (type(expires_s) is not int or expires_s < now_s):
            raise InvalidSignature('the signature\'s "expires" has passed')


class _KeyResolver(HTTPSignatureKeyResolver):
    """Each keyid's key as the ledger holds it when the request arrives: governance
    admits participants and rotates their keys while the node runs."""

    def __init__(self, key_of: Callable[[str], bytes | None]) -> None:
        self._key_of = key_of

    def resolve_public_key(self, key_id: object) -> Ed25519PublicKey | None:
        key = self._key_of(key_id) if type(key_id) is str else None
        return None if key is None else Ed25519PublicKey.from_public_bytes(key)

    def resolve_private_key(self, key_id: str) -> Any:
        raise HTTPMessageSignaturesException("the node signs no requests")


@dataclass(slots=True)
class _Participant:
    """One participant's rate bucket, remembered nonces and open waits."""

    rate_per_s: float
    tokens: float
    refilled_s: float
    nonces: set[str] = field(default_factory=set)
    expiries: list[tuple[float, str]] = field(default_factory=list)  # a heap
    waits: int = 0

    def forget_nonces_before(self, now_s: float) -> None:
        while self.expiries and self.expiries[0][0] < now_s:
            self.nonces.discard(heapq.heappop(self.expiries)[1])

    def take_token(self, now_s: float) -> bool:
        elapsed_s = max(0.0, now_s - self.refilled_s)
        self.tokens = min(self.rate_per_s, self.tokens + elapsed_s * self.rate_per_s)
        self.refilled_s = now_s
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Authenticator:
    """Checks each request's signature and charges its participant's limits."""

    def __init__(
        self,
        keys: Mapping[str, bytes] | Callable[[str], bytes | None],
        readers_of_all: Iterable[str],
        limits: AuthLimits | None = None,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        keys: each participant's (and supervisor's) Ed25519 public key, by id: a fixed
            mapping, or a function resolving an id per request (the ledger's current
            key; None for an unknown id).
        readers_of_all: the ids that read everything (the issuer, supervisors).
        """
        self.limits = limits or AuthLimits()
        self._now_s = now_s
        self._readers_of_all = frozenset(readers_of_all)
        self._key_of = keys.get if isinstance(keys, Mapping) else keys
        self._verifier = _Verifier(now_s, _KeyResolver(self._key_of))
        # Created at a participant's first authenticated request: bounded by the number
        # of ids with a key (participants and supervisors), never by what strangers send.
        self._participants: dict[str, _Participant] = {}

    def _participant(self, participant_id: str) -> _Participant:
        participant = self._participants.get(participant_id)
        if participant is None:
            rate = float(self.limits.requests_per_s_max)
            participant = _Participant(rate_per_s=rate, tokens=rate, refilled_s=self._now_s())
            self._participants[participant_id] = participant
        return participant

    def nonce_count(self, participant_id: str) -> int:
        """How many of the participant's nonces the node remembers now."""
        participant = self._participants.get(participant_id)
        return 0 if participant is None else len(participant.nonces)

    def authenticate(
        self, method: str, target: str, fields: list[tuple[str, str]], body: bytes
    ) -> Caller:
        """The caller of a request whose signature holds and whose limits allow it.

        Args:
            target: the request target as received: the path and the query, if any.

        Raises:
            AuthError: 401 or 429 with a stable code; nothing is charged or remembered.
        """
        if not any(name.lower() == "signature-input" for name, _ in fields):
            raise AuthError(401, "SIGNATURE_MISSING", "sign every request (RFC 9421)")
        if not target.startswith("/"):
            text = f"the request target must be a path, got {bounded(target)}"
            raise AuthError(401, "SIGNATURE_INVALID", text)
        message = _ReceivedRequest(method, SIGNED_AUTHORITY + target, fields)
        try:
            # _Verifier checks `created` in the future; the age is checked below, with
            # the same clock, so that a stale signature gets its own code.
            results = self._verifier.verify(
                message,
                max_age=None,
                expect_label=None,
                require_components=COVERED_COMPONENTS,
                body=body,
            )
        except (HTTPMessageSignaturesException, ValueError, TypeError) as exc:
            raise AuthError(401, "SIGNATURE_INVALID", bounded(exc)) from exc
        parameters = results[0].parameters
        participant_id = str(parameters["keyid"])
        created_s = parameters.get("created")
        nonce = parameters.get("nonce")
        if not isinstance(nonce, str) or not NONCE_CHARS_MIN <= len(nonce) <= NONCE_CHARS_MAX:
            message_text = f"a nonce of {NONCE_CHARS_MIN}..{NONCE_CHARS_MAX} characters"
            raise AuthError(401, "SIGNATURE_INVALID", f"the signature needs {message_text}")
        now_s = self._now_s()
        age_s_max = self.limits.signature_age_s_max
        if not isinstance(created_s, int) or created_s < now_s - age_s_max:
            text = f"created more than {age_s_max} s ago: sign each request when sending it"
            raise AuthError(401, "SIGNATURE_STALE", text)
        participant = self._participant(participant_id)  # its key verified the signature
        participant.forget_nonces_before(now_s)
        if nonce in participant.nonces:
            raise AuthError(401, "SIGNATURE_REPLAYED", "this signed request was already used")
        if not participant.take_token(now_s):
            rate = self.limits.requests_per_s_max
            raise AuthError(429, "RATE_LIMITED", f"more than {rate} requests a second")
        # Remembered until it is stale: created_s >= now_s - age_s_max, checked above.
        expiry_s = created_s + age_s_max + CLOCK_SKEW_S
        assert expiry_s > now_s
        participant.nonces.add(nonce)
        heapq.heappush(participant.expiries, (expiry_s, nonce))
        # Bounded by the rate: a nonce is kept only with a token, for at most
        # age_s_max + 2 * CLOCK_SKEW_S, so at most requests_per_s_max times that (and a
        # burst) are held. Not asserted: a wall clock stepped back stretches the window.
        return Caller(participant_id, participant_id in self._readers_of_all)

    @contextlib.asynccontextmanager
    async def wait_slot(self, caller: Caller) -> AsyncIterator[None]:
        """Hold one of the caller's slots for a long poll or a stream.

        Raises:
            AuthError: 429 TOO_MANY_WAITS, all of them are held; the middleware answers it.
        """
        participant = self._participant(caller.participant_id)
        if participant.waits >= self.limits.waits_max:
            raise AuthError(
                429, "TOO_MANY_WAITS", f"{self.limits.waits_max} waits and streams already open"
            )
        participant.waits += 1
        try:
            yield
        finally:
            participant.waits -= 1

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def authenticate(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            body = await request.read()
            # The target as the client sent it (not re-encoded), which the client signed.
            fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers]
            try:
                target = request.raw_path
                request[CALLER] = self.authenticate(request.method, target, fields, body)
                return await handler(request)
            except AuthError as exc:
                response = json_error(exc.status, exc.code, str(exc))
                if exc.status == 429:
                    response.headers["Retry-After"] = "1"
                return response

        return authenticate
