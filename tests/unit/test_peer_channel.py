"""node.channel: the peer handshake binds both identities to the link's keys, and every
frame after it is sealed with a strictly sequential counter per direction."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from nacl.signing import SigningKey

import node.channel
from node.channel import (
    TAG_SIZE,
    Channel,
    ChannelError,
    DialerHandshake,
    ListenerHandshake,
    decode_hello,
)

CHAIN = "som-test"


def key(name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(name.encode()).digest())


def secret(label: str) -> bytes:
    return hashlib.sha256(b"ephemeral " + label.encode()).digest()


def dialer(
    name: str = "d", target: str = "l", *, expects: str = "l", label: str = "d"
) -> DialerHandshake:
    return DialerHandshake(
        chain_id=CHAIN,
        dialer_id=name,
        listener_id=target,
        signing_key=key(name),
        listener_key=bytes(key(expects).verify_key),
        ephemeral_secret=secret(label),
    )


def listener(hello: bytes, *, name: str = "l", dialer_key: str = "d") -> ListenerHandshake:
    return ListenerHandshake(
        decode_hello(hello),
        signing_key=key(name),
        dialer_key=bytes(key(dialer_key).verify_key),
        ephemeral_secret=secret(f"listener {name}"),
    )


def linked() -> tuple[Channel, Channel]:
    d = dialer()
    hello = d.hello()
    lis = listener(hello)
    channel_d, proof = d.on_reply(lis.reply())
    return channel_d, lis.on_proof(proof)


def test_both_ends_derive_one_channel_and_frames_flow_both_ways() -> None:
    dialer_side, listener_side = linked()
    assert dialer_side.handshake_hash == listener_side.handshake_hash
    for i in range(5):
        frame = f"frame {i}".encode() * i
        sealed = dialer_side.send.seal(frame)
        assert len(sealed) == len(frame) + TAG_SIZE
        assert frame not in sealed or not frame
        assert listener_side.receive.open(sealed) == frame
        assert dialer_side.receive.open(listener_side.send.seal(frame)) == frame


def test_every_link_has_its_own_keys() -> None:
    first, _ = linked()
    d = dialer(label="another link")
    lis = listener(d.hello())
    second, _ = d.on_reply(lis.reply())
    assert first.handshake_hash != second.handshake_hash
    with pytest.raises(ChannelError):
        second.receive.open(first.send.seal(b"x"))


def test_a_listener_without_the_expected_key_is_refused() -> None:
    d = dialer(expects="mallory")  # the dialer knows another key for "l"
    lis = listener(d.hello())
    with pytest.raises(ChannelError, match="listener's signature"):
        d.on_reply(lis.reply())


def test_a_dialer_without_the_claimed_key_is_refused() -> None:
    d = dialer()
    lis = listener(d.hello(), dialer_key="someone else")
    _, proof = d.on_reply(lis.reply())
    with pytest.raises(ChannelError, match="dialer's signature"):
        lis.on_proof(proof)


def test_a_changed_identity_in_the_hello_fails_the_transcript() -> None:
    """A relay that rewrites who is dialing makes the two transcripts differ."""
    d = dialer("d", "l")
    fields = msgpack.unpackb(d.hello())
    fields[2] = "e"  # the relay claims the dialer is e (and the listener has e's key)
    lis = listener(msgpack.packb(fields, use_bin_type=True), dialer_key="d")
    with pytest.raises(ChannelError):  # the reply's associated data (h) differs
        d.on_reply(lis.reply())


def test_a_relay_with_its_own_ephemeral_keys_cannot_splice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A man in the middle runs one handshake with each side, with its own ephemeral keys,
    to learn both links' keys. It can even pass l's genuine signature on to d: l signed
    its own transcript, which holds the relay's ephemeral key, not d's."""
    signatures: list[bytes] = []
    original = node.channel.verify_bytes

    def recording(public_key: bytes, signed: bytes, signature: bytes) -> bool:
        signatures.append(signature)
        return original(public_key, signed, signature)

    monkeypatch.setattr(node.channel, "verify_bytes", recording)
    d = dialer()
    hello = d.hello()
    # Towards l, the relay dials as d (l only sees the claim) and obtains l's signature.
    relay_as_d = dialer(label="relay towards l")
    lis = listener(relay_as_d.hello())
    relay_as_d.on_reply(lis.reply())
    signature_of_l = signatures.pop()

    # Towards d, the relay answers as l, with l's genuine signature and its own keys.
    class Replayed:
        def sign(self, message: bytes) -> object:
            return type("Signed", (), {"signature": signature_of_l})()

    relay_as_l = ListenerHandshake(decode_hello(hello), signing_key=Replayed(),  # type: ignore[arg-type]
                                   dialer_key=bytes(key("d").verify_key),
                                   ephemeral_secret=secret("relay towards d"))  # fmt: skip
    with pytest.raises(ChannelError, match="listener's signature"):
        d.on_reply(relay_as_l.reply())
    # Nor does l's reply pass through unchanged: d derives other keys than l did.
    d_again = dialer(label="d again")
    fields = msgpack.unpackb(d_again.hello())
    fields[4] = msgpack.unpackb(dialer(label="relay, again").hello())[4]
    reply_to_relay = listener(msgpack.packb(fields, use_bin_type=True)).reply()
    with pytest.raises(ChannelError):
        d_again.on_reply(reply_to_relay)


def test_the_relay_cannot_forge_the_proof() -> None:
    """With its own ephemeral key towards l, the relay derives that link's keys, but the
    proof needs d's signature of that very transcript, which d never made."""
    relay = DialerHandshake(chain_id=CHAIN, dialer_id="d", listener_id="l",
                            signing_key=key("relay"), listener_key=bytes(key("l").verify_key),
                            ephemeral_secret=secret("relay"))  # fmt: skip
    lis = listener(relay.hello())
    _, relay_proof = relay.on_reply(lis.reply())
    with pytest.raises(ChannelError, match="dialer's signature"):
        lis.on_proof(relay_proof)
    # d's genuine proof, from its own link with l, does not open on the relay's link.
    d = dialer()
    lis_d = listener(d.hello())
    _, genuine_proof = d.on_reply(lis_d.reply())
    lis_relay = listener(dialer(label="relay again").hello())
    lis_relay.reply()
    with pytest.raises(ChannelError):
        lis_relay.on_proof(genuine_proof)


@pytest.mark.parametrize("where", [0, 31, 32, 100, 111])
def test_a_flipped_byte_in_the_reply_is_refused(where: int) -> None:
    d = dialer()
    lis = listener(d.hello())
    reply = bytearray(lis.reply())
    reply[where] ^= 0x01
    with pytest.raises(ChannelError):
        d.on_reply(bytes(reply))


def sealed_frames(channel: Channel, count: int) -> list[bytes]:
    return [channel.send.seal(f"frame {i}".encode()) for i in range(count)]


def test_a_replayed_frame_fails() -> None:
    dialer_side, listener_side = linked()
    frames = sealed_frames(dialer_side, 2)
    assert listener_side.receive.open(frames[0]) == b"frame 0"
    with pytest.raises(ChannelError):
        listener_side.receive.open(frames[0])


def test_reordered_frames_fail() -> None:
    dialer_side, listener_side = linked()
    frames = sealed_frames(dialer_side, 2)
    with pytest.raises(ChannelError):
        listener_side.receive.open(frames[1])


def test_a_dropped_frame_then_the_next_fails() -> None:
    dialer_side, listener_side = linked()
    frames = sealed_frames(dialer_side, 3)
    assert listener_side.receive.open(frames[0]) == b"frame 0"
    with pytest.raises(ChannelError):
        listener_side.receive.open(frames[2])  # frame 1 was dropped on the way


@pytest.mark.parametrize("where", [0, 3, -1])
def test_a_flipped_frame_fails_and_the_link_stays_failed(where: int) -> None:
    dialer_side, listener_side = linked()
    frames = sealed_frames(dialer_side, 2)
    flipped = bytearray(frames[0])
    flipped[where] ^= 0x80
    with pytest.raises(ChannelError):
        listener_side.receive.open(bytes(flipped))
    with pytest.raises(ChannelError):
        listener_side.receive.open(frames[0])  # not even the genuine one, after a failure


def test_an_injected_frame_fails() -> None:
    _, listener_side = linked()
    with pytest.raises(ChannelError):
        listener_side.receive.open(b"\x91\xc4\x03abc" + b"\0" * TAG_SIZE)


def test_a_frame_does_not_open_in_the_other_direction() -> None:
    dialer_side, _ = linked()
    with pytest.raises(ChannelError):
        dialer_side.receive.open(dialer_side.send.seal(b"reflected"))


@pytest.mark.parametrize(
    "hello",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, CHAIN, "d", "l", b"\1" * 32]),  # version 1
        msgpack.packb([2, CHAIN, "d", "l", b"\1" * 31]),
        msgpack.packb([2, CHAIN, 7, "l", b"\1" * 32]),
        msgpack.packb([2, CHAIN, "d", "l", b"\1" * 32, "extra"]),
        msgpack.packb([CHAIN, "d", "l", b"\1" * 32]),  # the old hello
        b"\x95" + b"\xda\xff\xff" * 400,
    ],
)
def test_a_malformed_hello_is_refused(hello: bytes) -> None:
    with pytest.raises(ChannelError):
        decode_hello(hello)


def test_an_ephemeral_key_of_small_order_is_refused() -> None:
    hello = msgpack.packb([2, CHAIN, "d", "l", b"\0" * 32], use_bin_type=True)
    with pytest.raises(ChannelError, match="ephemeral key refused"):
        listener(hello).reply()
