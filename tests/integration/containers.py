"""Real containers for tests: podman, a local base image, the somnet image, compose.

No container registry is reachable from the test machines, so the base image is made
here: a minimal Debian bookworm by debootstrap (Debian's mirror is reachable) with
python3 and python3-venv, imported into podman. Both the root filesystem's tarball
(CACHE_DIR) and the imported image are kept between runs on the same machine; the slow
part (about 45 s) happens once.

Podman's default runtime crun fails in the test sandboxes (cgroups in hybrid mode, no
setrlimit), so every podman command here runs with CONTAINERS_CONF pointing at a
containers.conf that chooses runc and lowers the default ulimits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path("/var/cache/somnet-test")
BASE_IMAGE = "localhost/somnet-test-base:bookworm-python3"
BASE_TARBALL = CACHE_DIR / "bookworm-python3.tar"
TEST_IMAGE = "localhost/somnet:test"
PACKAGES = "podman runc podman-compose debootstrap"
INSTALL_HINT = f"as root: apt-get install -y {PACKAGES} (or `make container-deps` as root)"
CONTAINERS_CONF = """\
# Written by tests/integration/containers.py for the container tests.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""
COMMAND_TIMEOUT_S = 600  # a first debootstrap on a slow mirror; most commands take seconds


class ContainerSetupError(Exception):
    """This machine cannot run the container tests; the message says what to install."""


def podman_env() -> dict[str, str]:
    """The environment of every podman and podman-compose command."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    conf = CACHE_DIR / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def run(args: list[str], *, timeout_s: float = 120, check: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run a command with podman's environment; on failure, raise with its output."""
    result = subprocess.run(
        args, env=podman_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def check_machine() -> None:
    """Raise ContainerSetupError unless root, podman, podman-compose and debootstrap are
    here and podman can run a container."""
    if os.geteuid() != 0:
        raise ContainerSetupError(
            "the container tests need root (rootful podman, debootstrap); " + INSTALL_HINT
        )
    missing = [t for t in PACKAGES.split() if shutil.which(t) is None and
               not Path("/usr/sbin", t).exists()]  # fmt: skip
    if missing:
        raise ContainerSetupError(f"missing {', '.join(missing)}: {INSTALL_HINT}")


def image_exists(name: str) -> bool:
    return run(["podman", "image", "exists", name], check=False).returncode == 0


def ensure_base_image() -> tuple[str, float]:
    """The local bookworm base image, made (and cached) if missing.

    Returns:
        its name, and the seconds spent making it now (0 when it was cached).
    """
    started = time.monotonic()
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE, 0.0
    if not BASE_TARBALL.exists():
        make_base_tarball()
    run(["podman", "import", str(BASE_TARBALL), BASE_IMAGE], timeout_s=COMMAND_TIMEOUT_S)
    return BASE_IMAGE, time.monotonic() - started


def make_base_tarball() -> None:
    """debootstrap a minimal bookworm with python3 and venv into BASE_TARBALL (atomic)."""
    rootfs = CACHE_DIR / f"rootfs.{uuid.uuid4().hex}"
    try:
        run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
             "bookworm", str(rootfs), "http://deb.debian.org/debian"],
            timeout_s=COMMAND_TIMEOUT_S,
        )  # fmt: skip
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale"):  # fmt: skip
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        partial = BASE_TARBALL.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        partial.rename(BASE_TARBALL)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build_image(base_image: str) -> float:
    """`make image` on the local base, tagged TEST_IMAGE; returns the seconds it took."""
    started = time.monotonic()
    run(
        ["make", "--no-print-directory", "-C", str(REPO), "image", "ENGINE=podman",
         f"BASE_IMAGE={base_image}", f"IMAGE={TEST_IMAGE}"],
        timeout_s=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    return time.monotonic() - started


def image_size_bytes(name: str) -> int:
    return int(run(["podman", "image", "inspect", "--format", "{{.Size}}", name]).stdout)


def inspect(name: str) -> dict[str, Any]:
    document = json.loads(run(["podman", "inspect", name]).stdout)
    assert isinstance(document, list) and len(document) == 1
    result: dict[str, Any] = document[0]
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class ComposeProject:
    """One compose network started from DIR/compose.yaml by podman-compose."""

    directory: Path
    name: str

    def compose(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        return run(["podman-compose", "-p", self.name, "-f", "compose.yaml", *args],
                   cwd=self.directory, timeout_s=timeout_s)  # fmt: skip

    def container(self, service: str) -> str:
        """The container of a service, found by the labels both compose tools set."""
        names = run(
            ["podman", "ps", "-a", "--format", "{{.Names}}",
             "--filter", f"label=com.docker.compose.project={self.name}",
             "--filter", f"label=com.docker.compose.service={service}"],
        ).stdout.split()  # fmt: skip
        assert len(names) == 1, (service, names)
        return names[0]

    @property
    def network(self) -> str:
        return f"{self.name}_default"

    def logs(self, service: str, lines: int = 40) -> str:
        result = run(["podman", "logs", "--tail", str(lines), self.container(service)],
                     check=False)  # fmt: skip
        return result.stdout + result.stderr

    def down(self) -> None:
        """Remove the containers and the network, whatever state they are in."""
        names = run(
            ["podman", "ps", "-a", "--format", "{{.Names}}",
             "--filter", f"label=com.docker.compose.project={self.name}"], check=False
        ).stdout.split()  # fmt: skip
        if names:
            run(["podman", "rm", "--force", "--time", "5", *names], check=False, timeout_s=120)
        run(["podman", "network", "rm", "--force", self.network], check=False)
