"""The API over HTTPS (node.toml [api] tls_cert_file, tls_key_file), with a certificate
the test makes: the project's client trusts the node's own certificate, plain HTTP to
the same port gets no answer, and a certificate the node cannot load stops it at start.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli.api_client import ApiClient, ApiError, blocking, client_for_home
from node.fatal import FatalReason
from tests.integration.network import Network, dump_logs

pytestmark = pytest.mark.network


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 key and a self-signed certificate for 127.0.0.1 (an IP SAN), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "somnet test node")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "api_cert.pem", directory / "api_key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def configure_tls(home: Path, cert_file: Path, key_file: Path) -> None:
    toml = home / "node.toml"
    text = toml.read_text()
    assert text.count("[api]\n") == 1
    lines = f'[api]\ntls_cert_file = "{cert_file}"\ntls_key_file = "{key_file}"\n'
    toml.write_text(text.replace("[api]\n", lines))


def test_the_api_speaks_https_with_the_configured_certificate_and_only_that(
    tmp_path: Path,
) -> None:
    network = Network.create(tmp_path)
    bank = network.banks[0]
    home = network.entries[bank].home
    configure_tls(home, *write_self_signed(home))
    network.start(bank)
    try:
        client = client_for_home(home)  # trusts the node's own certificate
        assert client.base_url.startswith("https://127.0.0.1:")

        def status() -> dict[str, object] | None:
            try:
                return dict(blocking(client_for_home(home), ApiClient.status))
            except ApiError as exc:
                assert exc.status == 0, exc  # not answering yet; never an HTTP error
                return None

        answer = network.wait_for(status, 60, f"{bank}'s API answering over HTTPS")
        assert answer is not None and answer["node_id"] == bank
        # Plain HTTP to the same port: no HTTP answer at all.
        plain_url = client.base_url.replace("https://", "http://")
        plain = ApiClient(plain_url, network.credentials(bank), timeout_s=10)
        with pytest.raises(ApiError) as caught:
            blocking(plain, ApiClient.status)
        assert caught.value.status == 0, caught.value
        # And a client that does not trust the certificate refuses the node.
        untrusting = ApiClient(client.base_url, network.credentials(bank), timeout_s=10)
        with pytest.raises(ApiError, match="certificate") as caught:
            blocking(untrusting, ApiClient.status)
        assert caught.value.status == 0
    except BaseException:
        print(dump_logs(network))
        raise
    finally:
        network.stop_all()


def test_a_certificate_the_node_cannot_load_stops_it_with_the_config_status(
    tmp_path: Path,
) -> None:
    network = Network.create(tmp_path)
    home = network.entries[network.banks[0]].home
    cert_file, key_file = write_self_signed(home)
    missing = home / "no_such_cert.pem"
    cases = [
        {"SOMNET_API_TLS_CERT_FILE": str(missing), "SOMNET_API_TLS_KEY_FILE": str(key_file)},
        # A certificate with a key that is not its own.
        {"SOMNET_API_TLS_CERT_FILE": str(cert_file), "SOMNET_API_TLS_KEY_FILE": str(cert_file)},
    ]
    for env in cases:
        run = subprocess.run(
            [sys.executable, "-m", "cli.main", "run", "--home", str(home)],
            cwd=home.parent, env={**os.environ, **env}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert run.returncode == FatalReason.CONFIG, (env, run.stderr)
        assert "Traceback" not in run.stderr
        assert "api.tls_cert_file" in run.stderr and "tls_key_file" in run.stderr, run.stderr
