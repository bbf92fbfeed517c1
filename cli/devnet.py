"""`somnet init` writes a ready network directory; `somnet devnet` runs it locally.

Layout of a network directory:

    DIR/genesis.json         the network's genesis (every node holds a copy)
    DIR/network.json         every node's id, role, home, API and peer URLs
    DIR/<id>/node.toml       that node's configuration
    DIR/<id>/node_key.json   its Ed25519 key, mode 0600
    DIR/nbkr/anchor_key.json the central bank's secp256k1 anchoring key, mode 0600
    DIR/officers/officer-N.json  the central bank officers' Ed25519 keys (governance
                             approvals, node/governance.py), mode 0600; genesis names
                             their public keys and the threshold
    DIR/<id>/genesis.json
    DIR/<id>/data/           its store, created at first start
    DIR/compose.yaml         with --compose: the network as containers (cli/compose.py)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from cli.api_client import ApiClient, ApiError, blocking, client_for_home
from cli.compose import (
    API_PORT,
    IMAGE_DEFAULT,
    PEER_PORT,
    ComposeOptions,
    compose_next_steps,
    write_compose,
)
from cli.entry import NodeEntry
from node.anchor import write_anchor_key
from node.errors import GenesisError
from node.genesis import parse_genesis
from node.keys import write_key_file

__all__ = ["NodeEntry", "init_network", "load_network", "register"]

ISSUER_ID = "nbkr"  # the National Bank of the Kyrgyz Republic: issuer and validator
BANK_FUNDS_TYIYN = 1_000_000_000_00  # 1 billion som for each devnet bank
READY_TIMEOUT_S = 120
OFFICERS_DEFAULT = 3
OFFICER_THRESHOLD_DEFAULT = 2  # four-eyes: two officers approve every governance action
# anvil's (and hardhat's) first dev account: public knowledge, funded on a local test chain
# only. `somnet devnet --anchor-rpc` signs with it unless --anchor-key names another key.
ANVIL_DEV_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
ANVIL_DEV_KEY_NAME = "anvil_dev_key.json"


def node_ids(validators: int, banks: int) -> list[tuple[str, str]]:
    ids = [(ISSUER_ID, "issuer")]
    ids += [(f"val-{i}", "validator") for i in range(1, validators)]
    ids += [(f"bank-{i}", "bank") for i in range(1, banks + 1)]
    return ids


def init_network(
    out: Path,
    *,
    validators: int,
    banks: int,
    chain_id: str,
    host: str,
    base_port: int,
    compose: ComposeOptions | None = None,
    officers: int = OFFICERS_DEFAULT,
    officer_threshold: int = OFFICER_THRESHOLD_DEFAULT,
    accounts: int = 0,
) -> list[NodeEntry]:
    """Write a new network directory. Refuses to touch an existing one.

    `officers` officer keys are written to DIR/officers/ (0600) and named in genesis,
    with `officer_threshold` of them required per governance action.

    With `compose`, the nodes are containers of one compose network (cli/compose.py):
    each listens on the image's ports, peers reach each other by service name (the node
    id), and `host:base_port...` are the API ports published on the host. DIR/compose.yaml
    is written too, and each home is handed to the container user.

    `accounts` more accounts (customers' accounts, for load and payout benchmarks) are
    opened, owned by the banks in turn and named `<bank>.acct-<n>`; only the banks' main
    accounts are issued money.
    """
    if (out / "genesis.json").exists():
        raise FileExistsError(f"{out} is already initialised")
    if not 1 <= officer_threshold <= officers:
        raise GenesisError(f"--officer-threshold must be 1..{officers} (the officers)")
    out.mkdir(parents=True, exist_ok=True)
    entries: list[NodeEntry] = []
    participants: list[dict[str, Any]] = []
    keys: dict[str, SigningKey] = {}
    for index, (node_id, role) in enumerate(node_ids(validators, banks)):
        peer_port, api_port = base_port + 2 * index, base_port + 2 * index + 1
        # Inside a compose network a node is its service, on the image's own ports.
        peer_address = f"{host}:{peer_port}" if compose is None else f"{node_id}:{PEER_PORT}"
        api_address = f"{host}:{api_port}" if compose is None else f"{node_id}:{API_PORT}"
        keys[node_id] = SigningKey.generate()
        participant: dict[str, Any] = {
            "id": node_id,
            "name": "National Bank of the Kyrgyz Republic" if role == "issuer" else node_id,
            "role": role,
            "public_key": bytes(keys[node_id].verify_key).hex(),
            "peer_address": peer_address,
            "api_address": api_address,
        }
        if role != "bank":
            participant["voting_power"] = 1
        participants.append(participant)
        entries.append(
            NodeEntry(
                node_id=node_id,
                role=role,
                home=out / node_id,
                api_url=f"http://{host}:{api_port}",  # as the host reaches it
                peer_url=f"http://{peer_address}",
            )
        )
    officer_keys = {f"officer-{n}": SigningKey.generate() for n in range(1, officers + 1)}
    genesis = {
        "chain_id": chain_id,
        "participants": participants,
        "accounts": customer_accounts(entries, accounts),
        "issuance": [{"account": e.node_id, "amount": BANK_FUNDS_TYIYN} for e in entries
                     if e.role == "bank"],
        "officers": [{"id": officer_id, "public_key": bytes(key.verify_key).hex()}
                     for officer_id, key in officer_keys.items()],
        "officer_threshold": officer_threshold,
    }  # fmt: skip
    genesis_text = json.dumps(genesis, indent=2) + "\n"
    parse_genesis(genesis_text)  # what we write must be what every node accepts
    for entry in entries:
        entry.home.mkdir()
        (entry.home / "genesis.json").write_text(genesis_text)
        write_key_file(entry.home / "node_key.json", keys[entry.node_id])
        if entry.role == "issuer":  # the anchoring node, once [anchor] enabled = true
            write_anchor_key(entry.home / "anchor_key.json")
        (entry.home / "node.toml").write_text(node_toml(entry, in_container=compose is not None))
    network = [
        {"id": e.node_id, "role": e.role, "home": e.node_id, "api_url": e.api_url,
         "peer_url": e.peer_url}
        for e in entries
    ]  # fmt: skip
    (out / "network.json").write_text(json.dumps(network, indent=2) + "\n")
    (out / "officers").mkdir(mode=0o700)
    for officer_id, key in officer_keys.items():
        write_key_file(out / "officers" / f"{officer_id}.json", key)
    (out / "genesis.json").write_text(genesis_text)
    if compose is not None:
        write_compose(out, entries, compose)
    return entries


def customer_accounts(entries: list[NodeEntry], count: int) -> list[dict[str, str]]:
    banks = [e.node_id for e in entries if e.role == "bank"]
    assert banks or count == 0, "accounts are owned by banks"
    return [{"id": f"{banks[n % len(banks)]}.acct-{n:07d}", "owner": banks[n % len(banks)]}
            for n in range(count)]  # fmt: skip


def node_toml(entry: NodeEntry, *, in_container: bool = False) -> str:
    peer = entry.peer_url.removeprefix("http://")
    api = entry.api_url.removeprefix("http://")
    if in_container:  # every interface of the container; the compose file publishes
        peer, api = f"0.0.0.0:{PEER_PORT}", f"0.0.0.0:{API_PORT}"
    return (
        f'# somnet node "{entry.node_id}". Every key can be overridden by an environment\n'
        f"# variable SOMNET_<SECTION>_<KEY>, for example SOMNET_API_LISTEN.\n"
        f'[node]\nid = "{entry.node_id}"\nlog_level = "INFO"\n\n'
        f'[p2p]\nlisten = "{peer}"\n\n'
        f'[api]\nlisten = "{api}"\n\n'
        f"[consensus]\nblock_txs_max = 5000\nempty_block_interval_ms = 5000\n"
        f"timeout_propose_ms = 1000\ntimeout_vote_ms = 500\n\n"
        f"[store]\nmap_size_bytes = 8589934592\n\n"
        f"[anchor]\nenabled = false\nevm_chain_id = 97\nevery_blocks = 100\n"
    )


def load_network(directory: Path) -> list[NodeEntry]:
    document = json.loads((directory / "network.json").read_text())
    return [
        NodeEntry(
            node_id=item["id"],
            role=item["role"],
            home=directory / item["home"],
            api_url=item["api_url"],
            peer_url=item["peer_url"],
        )
        for item in document
    ]


def cmd_init(args: argparse.Namespace) -> int:
    compose = ComposeOptions(image=args.image) if args.compose else None
    try:
        entries = init_network(
            Path(args.out),
            validators=args.validators,
            banks=args.banks,
            chain_id=args.chain_id,
            host=args.host,
            base_port=args.base_port,
            compose=compose,
            officers=args.officers,
            officer_threshold=args.officer_threshold,
        )
    except (FileExistsError, GenesisError) as exc:  # GenesisError: --chain-id is not an id
        print(f"somnet init: {exc}", file=sys.stderr)
        return 2
    for entry in entries:
        print(f"{entry.node_id:10} {entry.role:9} {entry.api_url}  {entry.home}")
    if compose is not None:
        print(compose_next_steps(Path(args.out)))
    return 0


def start_nodes(
    entries: list[NodeEntry], env_by_node: dict[str, dict[str, str]] | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    children = {}
    for entry in entries:
        extra = (env_by_node or {}).get(entry.node_id)
        with (entry.home / "node.log").open("ab") as log:  # the child keeps its own fd
            children[entry.node_id] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "run", "--home", str(entry.home)],
                env=None if extra is None else {**os.environ, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the devnet, which stops children itself
            )
    return children


def wait_ready(
    entries: list[NodeEntry],
    children: dict[str, subprocess.Popen[bytes]],
    stopped: Callable[[], bool] = lambda: False,
) -> bool:
    """True once every node has settled a block; False if a node exits, time runs out
    or `stopped()` turns true (a signal asked the devnet to stop)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stopped():
        for node_id, child in children.items():
            if child.poll() is not None:
                print(f"somnet devnet: {node_id} exited with {child.returncode}", file=sys.stderr)
                return False
        try:
            if all(status_of(e)["height"] >= 1 for e in entries):
                return True
        except ApiError:
            pass
        time.sleep(0.2)
    return False


def status_of(entry: NodeEntry) -> dict[str, Any]:
    """The node's status, asked as the node's own participant."""
    client = client_for_home(entry.home, api_url=entry.api_url)
    return blocking(client, ApiClient.status)


def stop_nodes(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def cmd_devnet(args: argparse.Namespace) -> int:
    home = Path(args.home)
    if not (home / "network.json").exists():
        init_network(
            home,
            validators=args.validators,
            banks=args.banks,
            chain_id="som-devnet",
            host="127.0.0.1",
            base_port=args.base_port,
        )
    entries = load_network(home)
    env_by_node = anchor_env(home, args) if args.anchor_rpc else None
    stop = {"signalled": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["signalled"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = start_nodes(entries, env_by_node)
    try:
        for entry in entries:
            print(f"{entry.node_id:10} {entry.role:9} {entry.api_url}  log {entry.home}/node.log")
        if env_by_node:
            print(f"{ISSUER_ID} anchors every {args.anchor_every} blocks to {args.anchor_rpc}")
        if not wait_ready(entries, children, lambda: stop["signalled"]):
            if stop["signalled"]:
                return 0
            print("somnet devnet: the network did not become ready", file=sys.stderr)
            return 1
        print("ready", flush=True)
        reported: set[str] = set()
        while not stop["signalled"]:
            for node_id, child in children.items():
                if child.poll() is not None and node_id not in reported:
                    print(f"somnet devnet: {node_id} exited with {child.returncode}", flush=True)
                    reported.add(node_id)
            time.sleep(0.2)
    finally:
        stop_nodes(children)
    print("stopped", flush=True)
    return 0


def anchor_env(home: Path, args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """SOMNET_ANCHOR_* settings for the central bank's node (the operators' own knob)."""
    key_file = Path(args.anchor_key).resolve() if args.anchor_key else home / ANVIL_DEV_KEY_NAME
    if not args.anchor_key and not key_file.exists():
        write_anchor_key(key_file, ANVIL_DEV_KEY)
    settings = {
        "ENABLED": "true",
        "RPC_URL": args.anchor_rpc,
        "EVERY_BLOCKS": str(args.anchor_every),
        "EVM_CHAIN_ID": str(args.anchor_chain_id),
        "KEY_FILE": str(key_file.resolve()),
    }
    return {ISSUER_ID: {f"SOMNET_ANCHOR_{name}": value for name, value in settings.items()}}


def add_anchor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anchor-rpc", metavar="URL", help="EVM JSON-RPC URL: nbkr anchors")
    parser.add_argument("--anchor-every", type=positive, default=10, metavar="N",
                        help="anchor every N blocks (default 10)")  # fmt: skip
    parser.add_argument("--anchor-chain-id", type=positive, default=97, metavar="ID",
                        help="the EVM chain id the endpoint must report (default 97)")  # fmt: skip
    parser.add_argument(
        "--anchor-key",
        metavar="FILE",
        help="funded secp256k1 key file (0600); default: anvil's first dev account",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser("init", help="write a ready network directory")
    init.add_argument("--validators", type=positive, default=4)
    init.add_argument("--banks", type=nonnegative, default=2)
    init.add_argument("--out", required=True, help="the network directory to create")
    init.add_argument("--chain-id", default="som-devnet")
    init.add_argument("--host", default="127.0.0.1")
    init.add_argument(
        "--base-port", type=port, default=26600, help="first port (with --compose: API ports)"
    )
    init.add_argument(
        "--compose",
        action="store_true",
        help="also write DIR/compose.yaml: every node a container of the somnet image",
    )
    init.add_argument("--image", default=IMAGE_DEFAULT, help="with --compose: the node image")
    init.add_argument(
        "--officers",
        type=positive,
        default=OFFICERS_DEFAULT,
        help="central bank officer keys written to OUT/officers/ (governance approvals)",
    )
    init.add_argument(
        "--officer-threshold",
        type=positive,
        default=OFFICER_THRESHOLD_DEFAULT,
        help="officer approvals every governance action needs",
    )
    init.set_defaults(handler=cmd_init)
    devnet = subparsers.add_parser("devnet", help="run a local network of node processes")
    devnet.add_argument("--home", default="devnet")
    devnet.add_argument("--validators", type=positive, default=4)
    devnet.add_argument("--banks", type=nonnegative, default=2)
    devnet.add_argument("--base-port", type=port, default=26600)
    add_anchor_arguments(devnet)
    devnet.set_defaults(handler=cmd_devnet)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 1024 <= value <= 65000:
        raise argparse.ArgumentTypeError("must be 1024..65000")
    return value
