"""The node image and the compose network, built and run for real (rootful podman).

`make image` builds deploy/Dockerfile on a local Debian bookworm base (containers.py
makes and caches it: no registry is reachable here), then each test brings up 4
validators and 2 banks from the compose file `somnet init --compose` writes, and talks
to them through the API ports it publishes on 127.0.0.1. Every wait is for a condition
with a deadline (waiting.py). A machine that cannot run these fails them, saying what to
install: they are never skipped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.api_client import ApiError
from cli.compose import API_PORT, CONTAINER_UID, ComposeOptions
from cli.devnet import init_network
from cli.ports import free_port_range
from tests.integration import containers
from tests.integration.containers import ComposeProject, ContainerSetupError, run
from tests.integration.network import FAST, Network
from tests.integration.waiting import wait_for

# The first run on a machine makes the base image (debootstrap, about a minute) inside
# the first test's fixture; later runs take seconds per test.
pytestmark = [pytest.mark.network, pytest.mark.timeout(600)]

STOP_S_MAX = 5.0
"""A node given SIGTERM as PID 1 stops cleanly within this."""
FAST_TOML = {  # tests/integration/network.py's FAST timings, as node.toml lines
    "empty_block_interval_ms = 5000": "empty_block_interval_ms = "
    + FAST["SOMNET_CONSENSUS_EMPTY_BLOCK_INTERVAL_MS"],
    "timeout_propose_ms = 1000": "timeout_propose_ms = "
    + FAST["SOMNET_CONSENSUS_TIMEOUT_PROPOSE_MS"],
    "timeout_vote_ms = 500": "timeout_vote_ms = " + FAST["SOMNET_CONSENSUS_TIMEOUT_VOTE_MS"],
}


@pytest.fixture(scope="module")
def image() -> str:
    """The somnet image, built by `make image` on the cached local base."""
    try:
        containers.check_machine()
    except ContainerSetupError as exc:
        pytest.fail(f"cannot run the container tests: {exc}", pytrace=False)
    base, base_s = containers.ensure_base_image()
    build_s = containers.build_image(base)
    size_mb = containers.image_size_bytes(containers.TEST_IMAGE) / 1e6
    print(f"base image {base}: {base_s:.1f}s (0: cached); `make image`: {build_s:.1f}s; "
          f"image size {size_mb:.0f} MB")  # fmt: skip
    return containers.TEST_IMAGE


@pytest.fixture
def compose(image: str, tmp_path: Path) -> Iterator[tuple[ComposeProject, Network]]:
    """4 validators and 2 banks from `somnet init --compose`, up and at height 1."""
    directory = tmp_path / "net"
    entries = init_network(
        directory,
        validators=4,
        banks=2,
        chain_id="som-test",
        host="127.0.0.1",
        base_port=free_port_range(2 * 6),
        compose=ComposeOptions(image=image),
    )
    for entry in entries:  # the test's timings, as an operator would set them
        toml = entry.home / "node.toml"
        text = toml.read_text()
        for old, new in FAST_TOML.items():
            assert old in text
            text = text.replace(old, new)
        toml.write_text(text)
    project = ComposeProject(directory=directory, name=f"somnet-test-{uuid.uuid4().hex[:8]}")
    network = Network(directory, entries, env={})
    started = time.monotonic()
    try:
        project.compose("up", "-d")
        network.wait_height(list(network.entries), 1, timeout_s=120)
        network.wait_for(lambda: all_caught_up(network), 60, "every node caught up")
        print(f"compose up to height 1 on all 6 nodes: {time.monotonic() - started:.1f}s")
        yield project, network
    finally:
        for service in network.entries:
            print(f"--- {service} ---\n{project.logs(service)}")
        project.down()


def all_caught_up(network: Network) -> bool:
    """Every node takes submissions (a node answers 503 CATCHING_UP until then)."""
    try:
        return all(network.status(node)["caught_up"] for node in network.entries)
    except ApiError:
        return False


def submit(network: Network, bank: str, tx: bytes) -> str:
    """Submit as a bank's client does: a node briefly behind (more than 2 blocks, easy
    at 200 ms blocks on a loaded machine) answers 503 CATCHING_UP, and the client retries
    the same bytes, which can never settle twice."""

    def accepted() -> str | None:
        try:
            return network.submit(bank, tx)
        except ApiError as exc:
            if exc.body.get("code") != "CATCHING_UP":
                raise
            return None

    return wait_for(accepted, 60, f"{bank} to accept a transfer")


def transfer_round(network: Network, count: int) -> list[str]:
    """`count` transfers each way, submitted to both banks; their hashes."""
    bank_1, bank_2 = network.banks
    hashes = [submit(network, bank_1, network.sign_transfer(bank_1, bank_2, 100)) for _ in
              range(count)]  # fmt: skip
    hashes += [submit(network, bank_2, network.sign_transfer(bank_2, bank_1, 1)) for _ in
               range(count)]  # fmt: skip
    return hashes


def assert_final_everywhere(network: Network, nodes: list[str], hashes: list[str]) -> int:
    finals = [network.wait_final(node, h) for node in nodes for h in hashes]
    assert {f["status"] for f in finals} == {"final"}, finals
    top = max(int(f["height"]) for f in finals)
    network.assert_same_chain(nodes, top)
    return top


def test_transfers_at_both_banks_are_final_on_every_node(
    compose: tuple[ComposeProject, Network],
) -> None:
    project, network = compose
    everyone = list(network.entries)
    started = time.monotonic()
    hashes = transfer_round(network, 10)
    top = assert_final_everywhere(network, everyone, hashes)
    print(f"20 transfers final on all 6 nodes, same blocks 1..{top}: "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    bank_1, bank_2 = network.banks
    # What README.md has a bank type: the CLI inside its container, with the node's key.
    command = ["somnet", "transfer", "--home", "/data", "--to", bank_2, "--amount", "12.50"]
    exec_transfer = run(["podman", "exec", project.container(bank_1), *command, "--wait"])
    assert '"status": "final"' in exec_transfer.stdout, exec_transfer.stdout
    moved = 10 * 100 - 10 * 1 + 1250
    for node in everyone:
        assert network.balance(node, bank_1) == 100_000_000_000 - moved
        assert network.balance(node, bank_2) == 100_000_000_000 + moved
    # Only the APIs are published, and only on loopback; the root filesystem is read-only.
    for service in everyone:
        host_config = containers.inspect(project.container(service))["HostConfig"]
        published = {p: b for p, b in host_config["PortBindings"].items() if b}  # not EXPOSE
        assert list(published) == [f"{API_PORT}/tcp"], published
        assert [b["HostIp"] for b in published[f"{API_PORT}/tcp"]] == ["127.0.0.1"]
        assert host_config["ReadonlyRootfs"] is True


def test_a_killed_validator_catches_up(compose: tuple[ComposeProject, Network]) -> None:
    project, network = compose
    victim = network.validators[-1]
    others = [n for n in network.entries if n != victim]
    run(["podman", "kill", "--signal", "KILL", project.container(victim)])
    height = max(network.heights(others).values())
    network.wait_height(others, height + 3)  # three validators of four go on
    top = assert_final_everywhere(network, others, transfer_round(network, 3))
    run(["podman", "start", project.container(victim)])
    network.wait_height([victim], top, timeout_s=120)
    network.assert_same_chain(list(network.entries), top)


def test_a_bank_container_recreated_from_its_volume_keeps_its_data(
    compose: tuple[ComposeProject, Network],
) -> None:
    project, network = compose
    bank_1 = network.banks[0]
    hashes = transfer_round(network, 3)
    top = assert_final_everywhere(network, list(network.entries), hashes)
    balance = network.balance(bank_1, bank_1)
    run(["podman", "stop", "--time", "30", project.container(bank_1)])
    run(["podman", "rm", project.container(bank_1)])
    project.compose("up", "-d", bank_1)  # a new container, on the same home folder
    network.wait_for(lambda: network.height(bank_1) >= top, 120, f"{bank_1} back")
    for tx_hash in hashes:  # nothing lost: every settled transfer is still known, final
        assert network.tx_status(bank_1, tx_hash)["status"] == "final"
    assert network.balance(bank_1, bank_1) == balance
    # It follows the chain again: its peers' dials reach the new container (a dial to the
    # old container's address once hung for minutes without a connect deadline).
    later = assert_final_everywhere(network, list(network.entries), transfer_round(network, 2))
    assert later > top


def test_a_disconnected_validator_catches_up_after_reconnecting(
    compose: tuple[ComposeProject, Network],
) -> None:
    project, network = compose
    victim = network.validators[1]
    others = [n for n in network.entries if n != victim]
    container = project.container(victim)
    run(["podman", "network", "disconnect", project.network, container])
    try:
        height = max(network.heights(others).values())
        network.wait_height(others, height + 3)
        top = assert_final_everywhere(network, others, transfer_round(network, 3))
    finally:  # the service name must resolve again for its peers
        run(["podman", "network", "connect", "--alias", victim, project.network, container])
    network.wait_height([victim], top, timeout_s=120)
    network.assert_same_chain(list(network.entries), top)


def test_runs_as_non_root_healthy_only_while_serving_and_stops_on_sigterm(
    compose: tuple[ComposeProject, Network], image: str
) -> None:
    project, network = compose
    bank_2 = network.banks[1]
    container = project.container(bank_2)
    top = run(["podman", "top", container, "huser", "args"]).stdout.splitlines()
    assert len(top) == 2 and top[1].split()[0] == str(CONTAINER_UID), top  # PID 1 only
    assert containers.inspect(container)["Config"]["User"] == f"{CONTAINER_UID}:{CONTAINER_UID}"
    assert run(["podman", "healthcheck", "run", container], check=False).returncode == 0
    # The same image and home, but a process that does not serve: unhealthy.
    idle = f"{project.name}-idle"
    run(["podman", "run", "-d", "--name", idle, "--read-only", "--entrypoint", "python3",
         "-v", f"{network.entries[bank_2].home}:/data", image,
         "-c", "import time; time.sleep(600)"])  # fmt: skip
    try:
        result = run(["podman", "healthcheck", "run", idle], check=False)
        assert result.returncode != 0 and "unhealthy" in result.stdout + result.stderr, result
    finally:
        run(["podman", "rm", "--force", "--time", "0", idle], check=False)
    # SIGTERM to PID 1: a clean stop (exit 0) within seconds, well before podman's SIGKILL.
    started = time.monotonic()
    run(["podman", "stop", "--time", "30", container])
    stop_s = time.monotonic() - started
    state = containers.inspect(container)["State"]
    assert state["ExitCode"] == 0 and stop_s < STOP_S_MAX, (state, stop_s)
    print(f"{bank_2} stopped by SIGTERM in {stop_s:.1f}s, exit 0")
    assert run(["podman", "healthcheck", "run", container], check=False).returncode != 0
    wait_for(lambda: network.height(bank_2) == -1, 10, f"{bank_2}'s API gone")
