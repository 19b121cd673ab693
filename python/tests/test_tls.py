"""The client over TLS against real ebm-server processes: a CA and certificates made at test
time (``cryptography``), a trusted and an untrusted CA, mutual TLS with and without a client
certificate, and a managed token created and revoked with ``ebm-server tokens``."""
from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ebm_client import Client
from ebm_client.errors import EbmError, UnauthenticatedError
from ebm_server import ServerProcess


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


class Ca:
    """A self-signed CA that issues server (SAN 127.0.0.1, localhost) and client certificates."""

    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = directory / f"{name}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common: str, server: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder().subject_name(_name(common)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.directory / f"{self.name}-{common}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, _write_key(key, self.directory / f"{self.name}-{common}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca, other = Ca(directory, "ca"), Ca(directory, "other-ca")
    server_cert, server_key = ca.issue("server", server=True)
    client_cert, client_key = ca.issue("client", server=False)
    return dict(ca=ca.pem, other_ca=other.pem, server_cert=server_cert, server_key=server_key,
                client_cert=client_cert, client_key=client_key)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    tls = dict(cert=pki["server_cert"], key=pki["server_key"], ca=pki["ca"])
    process = ServerProcess(tmp_path_factory.mktemp("ebm-tls"), tls=tls).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    tls = dict(cert=pki["server_cert"], key=pki["server_key"], client_ca=pki["ca"], ca=pki["ca"],
               client_cert=pki["client_cert"], client_key=pki["client_key"])
    process = ServerProcess(tmp_path_factory.mktemp("ebm-mtls"), tls=tls).start()
    yield process
    process.stop()


def test_https_with_the_servers_ca(tls_server, pki):
    assert tls_server.url.startswith("https://")
    with Client(tls_server.url, ca_cert=pki["ca"]) as client:
        assert client.datasets() == []
    with Client(tls_server.url, ca_cert=pki["ca"].read_bytes()) as client:  # PEM bytes work too
        assert client.jobs() == []


def test_https_with_another_ca_is_not_trusted(tls_server, pki):
    with Client(tls_server.url, ca_cert=pki["other_ca"]) as client:
        with pytest.raises(EbmError) as raised:
            client.datasets()
    assert "not trusted" in str(raised.value), raised.value
    assert "ca_cert" in str(raised.value)


def test_mutual_tls_needs_a_client_certificate(mtls_server, pki):
    with Client(mtls_server.url, ca_cert=pki["ca"]) as client:
        with pytest.raises(EbmError) as raised:
            client.datasets()
    assert "client_cert" in str(raised.value), raised.value
    with Client(mtls_server.url, ca_cert=pki["ca"], client_cert=pki["client_cert"], client_key=pki["client_key"]) as client:
        assert client.datasets() == []


def test_mutual_tls_settings_from_the_environment(mtls_server, pki, monkeypatch):
    monkeypatch.setenv("EBM_CA_CERT", str(pki["ca"]))
    monkeypatch.setenv("EBM_CLIENT_CERT", str(pki["client_cert"]))
    monkeypatch.setenv("EBM_CLIENT_KEY", str(pki["client_key"]))
    with Client(mtls_server.url) as client:
        assert client.datasets() == []


def test_client_cert_and_key_go_together(pki):
    with pytest.raises(ValueError, match="client_cert and client_key go together"):
        Client("https://127.0.0.1:1", client_cert=pki["client_cert"])
    with pytest.raises(ValueError, match="https://"):
        Client("http://127.0.0.1:1", client_cert=pki["client_cert"], client_key=pki["client_key"])


def test_managed_token_created_used_and_revoked(tls_server, pki):
    def tokens(*args: str) -> str:
        done = subprocess.run(tls_server.command("tokens", *args), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    token = tokens("create", "--tenant", "py-alice", "--name", "pytest").strip()
    listed = [t for t in json.loads(tokens("list", "--json")) if t.get("tenant") == "py-alice"]
    assert len(listed) == 1, listed
    with Client(tls_server.url, token=token, ca_cert=pki["ca"]) as client:
        assert client.datasets() == []
        dataset = client.upload([[0, 1], [1, 0]], name="alice.npy")
        assert [d.id for d in client.datasets()] == [dataset.id]
        tokens("revoke", listed[0]["id"])
        with pytest.raises(UnauthenticatedError):
            client.datasets()
    with Client(tls_server.url, token="not-a-token", ca_cert=pki["ca"]) as client:
        with pytest.raises(UnauthenticatedError):
            client.datasets()
