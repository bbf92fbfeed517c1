"""The API's limits as configured: [api] keys, client addresses, the descriptor budget."""

from __future__ import annotations

import dataclasses
import re
import resource
from pathlib import Path

import pytest

from node import descriptors
from node.api_server import ApiLimits, address_key
from node.config import ConfigError, NodeConfig, load_config
from tests.unit.test_node_config import MINIMAL, write


def test_the_node_defaults_are_the_api_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(NodeConfig)}
    limits = ApiLimits()
    for field in dataclasses.fields(ApiLimits):
        assert defaults[f"api_{field.name}"] == getattr(limits, field.name), field.name


def test_api_limits_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '[api]\nlisten = "127.0.0.1:8080"',
        '[api]\nlisten = "127.0.0.1:8080"\nconnections_max = 900\nheader_timeout_ms = 2500',
    )
    environ = {"SOMNET_API_CONNECTIONS_PER_ADDRESS_MAX": "30", "SOMNET_API_BODY_TIMEOUT_MS": "700"}
    config = load_config(write(tmp_path, text), environ=environ)
    assert config.api_connections_max == 900
    assert config.api_connections_per_address_max == 30
    assert config.api_header_timeout_ms == 2500
    assert config.api_body_timeout_ms == 700


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SOMNET_API_CONNECTIONS_MAX": "0"}, "api.connections_max) must be in 1..60000"),
        ({"SOMNET_API_CONNECTIONS_MAX": "60001"}, "api.connections_max) must be in 1..60000"),
        ({"SOMNET_API_CONNECTIONS_PER_ADDRESS_MAX": "0"}, "api.connections_per_address_max"),
        ({"SOMNET_API_CONNECTIONS_PER_ADDRESS_MAX": "513"}, "at most api.connections_max (512)"),
        ({"SOMNET_API_CONNECTIONS_MAX": "10"}, "(default) must be at most"),  # 256 per address
        ({"SOMNET_API_HEADER_TIMEOUT_MS": "99"}, "api.header_timeout_ms) must be in 100..3600000"),
        ({"SOMNET_API_BODY_TIMEOUT_MS": "3600001"}, "api.body_timeout_ms) must be in 100..3600000"),
        ({"SOMNET_API_BODY_TIMEOUT_MS": "soon"}, "SOMNET_API_BODY_TIMEOUT_MS"),
    ],
)
def test_impossible_api_limits_are_refused_naming_the_key(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, MINIMAL), environ=environ)


@pytest.mark.parametrize(
    ("peername", "key"),
    [
        (("192.0.2.7", 51000), "192.0.2.7"),
        (("::ffff:192.0.2.7", 51000, 0, 0), "192.0.2.7"),  # IPv4 on a dual-stack socket
        (("2001:db8:1:2:aaaa::1", 51000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 51000, 0, 0), "2001:db8:1:2::/64"),  # the same host's /64
        (("2001:db8:1:3::1", 51000, 0, 0), "2001:db8:1:3::/64"),
        ("", "local"),  # a Unix socket
        (None, "local"),
    ],
)
def test_connections_count_against_the_client_address(peername: object, key: str) -> None:
    assert address_key(peername) == key


def test_the_descriptor_limit_is_raised_to_the_hard_limit_never_lowered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    assert descriptors.raise_descriptor_limit() == 4096
    assert limits["now"] == (4096, 4096)
    limits["now"] = (1024, resource.RLIM_INFINITY)  # raised to a sane cap instead
    assert descriptors.raise_descriptor_limit() == descriptors.NOFILE_TARGET
    limits["now"] = (100_000, 200_000)  # already above the cap: left alone
    assert descriptors.raise_descriptor_limit() == 100_000
    assert limits["now"] == (100_000, 200_000)


def test_a_refused_raise_keeps_the_limit_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: int, __: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, resource.RLIM_INFINITY))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert descriptors.raise_descriptor_limit() == 256


def test_the_default_api_fits_the_smallest_common_hard_limit_with_many_peers() -> None:
    needed = descriptors.descriptors_needed(
        api_connections_max=ApiLimits().connections_max, peer_count=90
    )
    assert needed <= 1024
