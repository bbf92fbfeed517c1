"""Ed25519 key files: JSON, written with mode 0600, refused when others can read them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from node.errors import NodeError

__all__ = ["KeyFileError", "load_key_file", "write_key_file"]

KEY_FILE_MODE = 0o600


class KeyFileError(NodeError):
    """A key file that is missing, malformed, or readable by others."""


def write_key_file(path: Path, key: SigningKey) -> None:
    """Create `path` holding `key`; never overwrites an existing key."""
    write_key_document(
        path,
        {
            "type": "ed25519",
            "seed_hex": bytes(key).hex(),
            "public_key_hex": bytes(key.verify_key).hex(),
        },
    )


def write_key_document(path: Path, document: dict[str, str]) -> None:
    """Create a key file (mode 0600, synced) holding `document`; never overwrites one.

    Raises:
        KeyFileError: the file exists.
    """
    try:
        # O_EXCL: an existing key is an identity; losing it to an overwrite is not undoable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError as exc:
        raise KeyFileError(f"{path}: key file exists; refusing to overwrite") from exc
    with os.fdopen(fd, "w") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())


def load_key_file(path: Path) -> SigningKey:
    """Read a key file written by `write_key_file`.

    Raises:
        KeyFileError: missing, readable by group or others, or not a valid key.
    """
    document = read_key_document(path)
    try:
        seed = bytes.fromhex(document["seed_hex"])
        public_key = bytes.fromhex(document["public_key_hex"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a somnet key file: {exc}") from exc
    if document.get("type") != "ed25519" or len(seed) != 32:
        raise KeyFileError(f"{path}: expected an ed25519 key with a 32-byte seed")
    key = SigningKey(seed)
    if bytes(key.verify_key) != public_key:
        raise KeyFileError(f"{path}: public_key_hex does not match the seed")
    return key


def read_key_document(path: Path) -> dict[str, Any]:
    """The JSON object of a key file that only its owner may read.

    Raises:
        KeyFileError: missing, readable by group or others, or not a JSON object.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: key file mode {oct(mode & 0o777)} is too open; use 0600")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a somnet key file: {exc}") from exc
    if not isinstance(document, dict):
        raise KeyFileError(f"{path}: not a somnet key file: expected a JSON object")
    return document
