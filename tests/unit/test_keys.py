"""Key files: 0600 on disk, no overwrite, clear refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from node.keys import KeyFileError, load_key_file, write_key_file


def test_written_key_is_private_and_loads_back(tmp_path: Path) -> None:
    key = SigningKey(b"\7" * 32)
    path = tmp_path / "node_key.json"
    write_key_file(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert bytes(load_key_file(path)) == bytes(key)


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "node_key.json"
    write_key_file(path, SigningKey(b"\1" * 32))
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_file(path, SigningKey(b"\2" * 32))
    assert bytes(load_key_file(path)) == b"\1" * 32


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node_key.json"
    write_key_file(path, SigningKey(b"\1" * 32))
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_key_file(path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not a somnet key file"),
        (json.dumps({"type": "ed25519", "seed_hex": "00"}), "not a somnet key file"),
        (json.dumps({"type": "rsa", "seed_hex": "00" * 32, "public_key_hex": ""}), "ed25519"),
        (json.dumps({"type": "ed25519", "seed_hex": "00" * 32, "public_key_hex": "00" * 32}),
         "does not match"),
    ],
)  # fmt: skip
def test_malformed_key_files_are_refused(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "node_key.json"
    path.write_text(document)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=message):
        load_key_file(path)


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_key_file(tmp_path / "absent.json")
