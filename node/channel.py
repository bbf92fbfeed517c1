"""Encrypted, authenticated peer links: the handshake and the frame cipher (pure: no I/O,
no clock; the ephemeral keys' randomness is passed in).

Theory of operation. The handshake is the Noise NN pattern (noiseprotocol.org/noise.html,
revision 34: `-> e`, `<- e, ee`), with protocol name Noise_NN_25519_ChaChaPoly_BLAKE2b,
and each side proves its genesis identity by signing the handshake transcript with its
Ed25519 key (as SIGMA does, and as libp2p's Noise handshake signs its static key):

1. Dialer -> listener, in the clear: [VERSION, chain id, dialer id, listener id, e_d].
   Both sides mix the first four into the transcript hash h as the Noise prologue, so
   the chain and both identities are bound to everything that follows; then e_d (the
   dialer's ephemeral X25519 public key) and its empty payload.
2. Listener -> dialer: e_l || AEAD(sig_L). Both mix e_l into h and the X25519 secret
   DH(e_d, e_l) into the chaining key, which yields the handshake cipher key. sig_L is
   the listener's Ed25519 signature of TAG_LISTENER || h, where h already covers the
   prologue and both ephemeral keys; it travels encrypted under a key that only the
   holders of the two ephemeral secrets can derive (key confirmation). The ciphertext
   is mixed into h too (Noise EncryptAndHash, with h as the associated data).
3. Both Split() the chaining key into two ChaCha20-Poly1305 keys: dialer -> listener and
   listener -> dialer. Dialer -> listener, the first frame (n = 0): AEAD(sig_D), the
   dialer's signature of TAG_DIALER || h, h being the final handshake hash, which covers
   message 2 and so the listener's signature.

Why a relay cannot splice: to sit between two nodes it must replace at least one
ephemeral key, and then the two sides compute different transcripts, so neither accepts
the other's signature; it cannot sign, having no genesis key. Changing an id or the chain
in message 1 changes the prologue and fails the same way. The tags keep a signature from
serving the other direction, and the ephemeral keys (fresh per link) from serving another
link. The ephemeral secrets are never stored, so a key stolen later reads no past link.

Frames after the handshake: ciphertext = ChaCha20-Poly1305-IETF(key, nonce, ad = b"",
frame), 16 bytes longer than the frame. The nonce is implicit, never sent: 4 zero bytes
and the frame's counter n (64-bit little-endian), which starts at 0 in each direction and
grows by one per frame. The receiver opens each frame with exactly the next n, so a
replayed, reordered, dropped-then-injected, forged or altered frame fails to open; the
caller then closes the link (a failed cipher state refuses all further use). The counter
may not reach 2**64 - 1 (Noise reserves it), which at a frame per microsecond is half a
million years away. Deviation from Noise: frames may exceed its 65,535-byte message
limit (we do not claim to interoperate with other Noise libraries).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import msgpack
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaclRuntimeError
from nacl.signing import SigningKey

from consensus.crypto import verify_bytes
from node.errors import NodeError

__all__ = [
    "KEY_SIZE",
    "TAG_DIALER",
    "TAG_LISTENER",
    "TAG_SIZE",
    "Channel",
    "ChannelError",
    "CipherState",
    "DialerHandshake",
    "Hello",
    "ListenerHandshake",
    "decode_hello",
]

VERSION = 2  # version 1 signed two nonces and then ran in clear
PROTOCOL_NAME = b"Noise_NN_25519_ChaChaPoly_BLAKE2b"
TAG_LISTENER = b"somnet/peer/listener/v2"
TAG_DIALER = b"somnet/peer/dialer/v2"
HASH_SIZE = 64  # BLAKE2b
KEY_SIZE = 32  # X25519 keys and ChaCha20-Poly1305 keys
SIGNATURE_SIZE = 64
TAG_SIZE = 16  # Poly1305
NONCE_MAX = 2**64 - 1  # reserved by Noise; never used
HELLO_BYTES_MAX = 1024
REPLY_SIZE = KEY_SIZE + SIGNATURE_SIZE + TAG_SIZE
PROOF_SIZE = SIGNATURE_SIZE + TAG_SIZE
assert len(PROTOCOL_NAME) <= HASH_SIZE  # so h starts as the name padded with zeros


class ChannelError(NodeError):
    """A handshake message or frame that fails: from a faulty peer or from the path.
    The link must close."""


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_SIZE).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def _hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise HKDF with two outputs (HMAC-BLAKE2b)."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    output2 = _hmac(temp_key, output1 + b"\x02")
    assert len(output1) == len(output2) == HASH_SIZE
    return output1, output2


def _dh(secret: bytes, public: bytes) -> bytes:
    try:
        shared = crypto_scalarmult(secret, public)
    except (NaclRuntimeError, ValueError, TypeError) as exc:
        # libsodium refuses a public key of small order (an all-zero shared secret).
        raise ChannelError("ephemeral key refused") from exc
    assert len(shared) == KEY_SIZE
    return bytes(shared)


class CipherState:
    """One direction's key and frame counter (Noise CipherState with ChaCha20-Poly1305)."""

    __slots__ = ("_failed", "_key", "nonce")

    def __init__(self, key: bytes) -> None:
        assert len(key) == KEY_SIZE
        self._key = key
        self.nonce = 0
        self._failed = False

    def _next_nonce(self) -> bytes:
        if self._failed or self.nonce >= NONCE_MAX:
            raise ChannelError("cipher state failed or exhausted")
        nonce = b"\0\0\0\0" + self.nonce.to_bytes(8, "little")
        self.nonce += 1
        return nonce

    def seal(self, plaintext: bytes, ad: bytes = b"") -> bytes:
        ciphertext = crypto_aead_chacha20poly1305_ietf_encrypt(
            plaintext, ad, self._next_nonce(), self._key
        )
        assert len(ciphertext) == len(plaintext) + TAG_SIZE
        return bytes(ciphertext)

    def open(self, ciphertext: bytes, ad: bytes = b"") -> bytes:
        """The plaintext of the next frame. Raises ChannelError if it is not exactly the
        frame the other side sealed with this counter; the state is unusable after."""
        nonce = self._next_nonce()
        try:
            plaintext = crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, self._key)
        except (CryptoError, ValueError, TypeError) as exc:
            self._failed = True
            raise ChannelError(f"frame {self.nonce - 1} fails authentication") from exc
        return bytes(plaintext)


class _SymmetricState:
    """Noise SymmetricState: the chaining key, the transcript hash h, and the cipher."""

    def __init__(self, prologue: bytes) -> None:
        self.h = PROTOCOL_NAME.ljust(HASH_SIZE, b"\0")
        self.chaining_key = self.h
        self.cipher: CipherState | None = None
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_key = _hkdf2(self.chaining_key, input_key_material)
        self.cipher = CipherState(temp_key[:KEY_SIZE])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = plaintext if self.cipher is None else self.cipher.seal(plaintext, self.h)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = ciphertext if self.cipher is None else self.cipher.open(ciphertext, self.h)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """(dialer -> listener, listener -> dialer)."""
        temp_key1, temp_key2 = _hkdf2(self.chaining_key, b"")
        return CipherState(temp_key1[:KEY_SIZE]), CipherState(temp_key2[:KEY_SIZE])


def _prologue(chain_id: str, dialer_id: str, listener_id: str) -> bytes:
    packed = msgpack.packb([VERSION, chain_id, dialer_id, listener_id], use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    """An authenticated link's two cipher states, after the handshake."""

    send: CipherState
    receive: CipherState
    handshake_hash: bytes
    """The final transcript hash: the same on both ends, different for every link."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """Message 1, as the listener decodes it (nothing in it is authenticated yet)."""

    chain_id: str
    dialer_id: str
    listener_id: str
    ephemeral: bytes


def decode_hello(data: object) -> Hello:
    """Raises ChannelError unless `data` has the shape of message 1 of this version."""
    if type(data) is not bytes or len(data) > HELLO_BYTES_MAX:
        raise ChannelError(f"hello: expected at most {HELLO_BYTES_MAX} bytes")
    try:
        obj = msgpack.unpackb(data, raw=False, max_bin_len=KEY_SIZE, max_str_len=256,
                              max_array_len=8, max_map_len=0, max_ext_len=0)  # fmt: skip
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ChannelError("hello: malformed") from exc
    if type(obj) is not list or len(obj) != 5 or obj[0] != VERSION:
        raise ChannelError(f"hello: expected version {VERSION}")
    _, chain_id, dialer_id, listener_id, ephemeral = obj
    if not all(type(x) is str for x in (chain_id, dialer_id, listener_id)):
        raise ChannelError("hello: expected ids as strings")
    if type(ephemeral) is not bytes or len(ephemeral) != KEY_SIZE:
        raise ChannelError("hello: expected a 32-byte ephemeral key")
    return Hello(chain_id=chain_id, dialer_id=dialer_id, listener_id=listener_id,
                 ephemeral=ephemeral)  # fmt: skip


class DialerHandshake:
    """The dialer's side: `hello()`, then `on_reply(message 2)` -> (channel, proof)."""

    def __init__(
        self,
        *,
        chain_id: str,
        dialer_id: str,
        listener_id: str,
        signing_key: SigningKey,
        listener_key: bytes,
        ephemeral_secret: bytes,
    ) -> None:
        assert len(ephemeral_secret) == KEY_SIZE
        self._hello = [VERSION, chain_id, dialer_id, listener_id]
        self._signing_key = signing_key
        self._listener_key = listener_key
        self._secret = ephemeral_secret
        self._state = _SymmetricState(_prologue(chain_id, dialer_id, listener_id))
        self._sent_hello = False

    def hello(self) -> bytes:
        assert not self._sent_hello
        self._sent_hello = True
        ephemeral = bytes(crypto_scalarmult_base(self._secret))
        self._state.mix_hash(ephemeral)  # -> e
        self._state.encrypt_and_hash(b"")  # an empty payload, in the clear
        packed = msgpack.packb([*self._hello, ephemeral], use_bin_type=True)
        assert isinstance(packed, bytes) and len(packed) <= HELLO_BYTES_MAX
        return packed

    def on_reply(self, data: object) -> tuple[Channel, bytes]:
        """Check message 2. Returns the channel and message 3 (the proof) to send.

        Raises:
            ChannelError: malformed, or the listener's signature does not verify.
        """
        assert self._sent_hello
        if type(data) is not bytes or len(data) != REPLY_SIZE:
            raise ChannelError("reply: malformed")
        state = self._state
        ephemeral = data[:KEY_SIZE]
        state.mix_hash(ephemeral)  # <- e
        state.mix_key(_dh(self._secret, ephemeral))  # ee
        signed_h = state.h
        signature = state.decrypt_and_hash(data[KEY_SIZE:])
        if not verify_bytes(self._listener_key, TAG_LISTENER + signed_h, signature):
            raise ChannelError("reply: the listener's signature does not verify")
        send, receive = state.split()
        proof = send.seal(self._signing_key.sign(TAG_DIALER + state.h).signature)
        assert len(proof) == PROOF_SIZE
        return Channel(send=send, receive=receive, handshake_hash=state.h), proof


class ListenerHandshake:
    """The listener's side, for a hello it accepts: `reply()`, then `on_proof(message 3)`."""

    def __init__(
        self,
        hello: Hello,
        *,
        signing_key: SigningKey,
        dialer_key: bytes,
        ephemeral_secret: bytes,
    ) -> None:
        assert len(ephemeral_secret) == KEY_SIZE
        self._hello = hello
        self._signing_key = signing_key
        self._dialer_key = dialer_key
        self._secret = ephemeral_secret
        self._state = _SymmetricState(_prologue(hello.chain_id, hello.dialer_id,
                                                hello.listener_id))  # fmt: skip
        self._state.mix_hash(hello.ephemeral)  # -> e
        self._state.decrypt_and_hash(b"")  # its empty payload
        self._replied = False

    def reply(self) -> bytes:
        """Message 2. Raises ChannelError if the dialer's ephemeral key is refused."""
        assert not self._replied
        self._replied = True
        state = self._state
        ephemeral = bytes(crypto_scalarmult_base(self._secret))
        state.mix_hash(ephemeral)  # <- e
        state.mix_key(_dh(self._secret, self._hello.ephemeral))  # ee
        signature = self._signing_key.sign(TAG_LISTENER + state.h).signature
        reply = ephemeral + state.encrypt_and_hash(signature)
        assert len(reply) == REPLY_SIZE
        return reply

    def on_proof(self, data: object) -> Channel:
        """Check message 3. Raises ChannelError unless it is the dialer's signature of
        this very transcript, sealed under this link's key."""
        assert self._replied
        if type(data) is not bytes or len(data) != PROOF_SIZE:
            raise ChannelError("proof: malformed")
        receive, send = self._state.split()
        signature = receive.open(data)
        if not verify_bytes(self._dialer_key, TAG_DIALER + self._state.h, signature):
            raise ChannelError("proof: the dialer's signature does not verify")
        return Channel(send=send, receive=receive, handshake_hash=self._state.h)
