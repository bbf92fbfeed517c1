"""Throughput of one peer link: a dialer sends N payloads of a given size to a listener,
both PeerNetworks in this process on loopback (one core does both ends' work).

    .venv/bin/python -m tests.load.peer_link_throughput [--payloads N] [--size B]
        [--frame-bytes B]

Prints payloads/s, frames/s and MB/s of payload, and libsodium's raw ChaCha20-Poly1305
seal+open rate for the same frame sizes, so the link's cost can be set against the
cipher's. Not a test: no wall-clock assertions anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time

from aiohttp import web
from nacl.signing import SigningKey

from node.transport import PeerAddress, PeerNetwork, TransportLimits


def key(name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(name.encode()).digest())


async def measure(payload_count: int, size: int, frame_bytes_max: int) -> None:
    known = {n: bytes(key(n).verify_key) for n in ("a", "b")}
    received = 0
    frames_before = 0
    done = asyncio.Event()

    def on_payload(peer: str, payload: bytes) -> None:
        nonlocal received
        received += 1
        if received == payload_count:
            done.set()

    limits = TransportLimits(
        frame_bytes_max=frame_bytes_max, queue_payloads_max=payload_count, queue_bytes_max=2**40
    )
    a = PeerNetwork(chain_id="bench", self_id="a", signing_key=key("a"), known_keys=known,
                    peers=[], on_payload=on_payload, limits=limits)  # fmt: skip
    app = web.Application()
    app.router.add_routes(a.routes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    b = PeerNetwork(chain_id="bench", self_id="b", signing_key=key("b"), known_keys=known,
                    peers=[PeerAddress(peer_id="a", url=f"http://127.0.0.1:{port}")],
                    on_payload=lambda p, d: None, limits=limits)  # fmt: skip
    await a.start()
    await b.start()
    while "b" not in a._inbound:  # noqa: ASYNC110 - a benchmark's own setup
        await asyncio.sleep(0.01)
    payload = b"\x5a" * size
    frames_before = b.counters["frames_sent"]
    start = time.perf_counter()
    cpu_start = time.process_time()
    for _ in range(payload_count):
        b.send("a", payload)
    await done.wait()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    frames = b.counters["frames_sent"] - frames_before
    print(f"{payload_count} payloads of {size} B: {payload_count / elapsed:,.0f} payloads/s, "
          f"{payload_count * size / elapsed / 1e6:,.1f} MB/s of payload, "
          f"{frames} frames ({frames / elapsed:,.0f}/s), wall {elapsed:.2f} s, "
          f"cpu {cpu:.2f} s")  # fmt: skip
    await b.stop()
    await a.stop()
    await runner.cleanup()


def cipher_rate(frame_size: int, count: int) -> None:
    try:
        from node.channel import CipherState
    except ImportError:
        print("no node.channel: links are not encrypted in this version")
        return
    sender, receiver = CipherState(b"k" * 32), CipherState(b"k" * 32)
    frame = b"\x5a" * frame_size
    start = time.perf_counter()
    for _ in range(count):
        receiver.open(sender.seal(frame))
    elapsed = time.perf_counter() - start
    print(f"ChaCha20-Poly1305 seal+open of {frame_size} B frames: {count / elapsed:,.0f}/s, "
          f"{count * frame_size / elapsed / 1e6:,.0f} MB/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payloads", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument(
        "--frame-bytes", type=int, default=4 * 1024 * 1024, help="small: cost per frame"
    )
    args = parser.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(measure(args.payloads, args.size, args.frame_bytes))
    cipher_rate(4 * 1024 * 1024, 200)
    cipher_rate(64 * 1024, 5_000)
    cipher_rate(1024, 100_000)


if __name__ == "__main__":
    main()
