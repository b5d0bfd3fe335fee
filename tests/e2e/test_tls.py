"""TLS listeners (the [tls] table of the config file): STOMP over TLS and HTTPS + wss:// next to the plain
listeners, certificate verification, TLS versions, mutual TLS, SIGHUP reload of the certificate, config errors,
and a server that shrugs off bad handshakes.

Every certificate is made here with `cryptography`: a server CA (CA 1), an unrelated CA (CA 2), an intermediate
under CA 1, a client CA, and leaf certificates signed by them, all written into the test's tmp directory.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import os
import re
import signal
import socket
import ssl
import struct
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import stomp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from e2e_helpers import (
    Closed,
    Collector,
    RawStompBase,
    RawTcpStomp,
    RawWsStomp,
    ServerStartError,
    StarlingServer,
    assert_still_alive,
    start_or_fail,
    stomp_close,
    stomp_connect,
    subscribe_sync,
    uid,
)

HOST = "127.0.0.1"
TIMEOUT = 5.0
# How a refused TLS handshake surfaces in Python: an alert (SSLError), or the server just closing/resetting.
HANDSHAKE_FAILURES = (ssl.SSLError, ConnectionResetError, BrokenPipeError)

# ================================================================================================== certificates


@dataclass
class Issued:
    """A certificate with its private key (and the intermediates a server sends after it)."""

    cert: x509.Certificate
    key: object
    chain: list = field(default_factory=list)

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def cert_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [self.cert, *self.chain])

    def key_pem(self, fmt: str = "pkcs8") -> bytes:
        form = {"pkcs8": serialization.PrivateFormat.PKCS8,
                "traditional": serialization.PrivateFormat.TraditionalOpenSSL}[fmt]
        return self.key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())

    def write(self, directory: Path, name: str, key_fmt: str = "pkcs8") -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(self.cert_pem())
        key_path.write_bytes(self.key_pem(key_fmt))
        return cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key(kind: str):
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def _builder(subject: str, key, issuer: Issued | None) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject))
         .issuer_name(issuer.cert.subject if issuer else _name(subject))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    signer = issuer.key if issuer else key
    return b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)


def make_ca(cn: str, issuer: Issued | None = None) -> Issued:
    key = _new_key("ec")
    cert = (_builder(cn, key, issuer)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(issuer.key if issuer else key, hashes.SHA256()))
    return Issued(cert, key)


def make_leaf(ca: Issued, cn: str, *, client: bool = False, key_kind: str = "ec") -> Issued:
    """A server certificate (SAN IP 127.0.0.1 and DNS localhost) or a client certificate, signed by ``ca``.
    When ``ca`` is an intermediate, the leaf's chain carries it."""
    key = _new_key(key_kind)
    eku = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    san = [x509.DNSName(cn)] if client else [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
    cert = (_builder(cn, key, ca)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=key_kind == "rsa", data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .sign(ca.key, hashes.SHA256()))
    chain = [ca.cert] if ca.cert.issuer != ca.cert.subject else []
    return Issued(cert, key, chain)


class Pki:
    """All the certificates of the module, and their files."""

    def __init__(self, d: Path):
        self.dir = d
        self.ca1 = make_ca("Starling Test CA 1")
        self.ca2 = make_ca("Unrelated Test CA 2")
        self.intermediate = make_ca("Starling Test Intermediate", self.ca1)
        self.client_ca = make_ca("Starling Test Client CA")
        self.server_a = make_leaf(self.ca1, "server-a")                      # EC, from CA 1
        self.server_b = make_leaf(self.ca2, "server-b", key_kind="rsa")      # RSA, from CA 2
        self.server_chained = make_leaf(self.intermediate, "server-chained")  # via the intermediate
        self.client_good = make_leaf(self.client_ca, "alice", client=True)
        self.client_other_ca = make_leaf(self.ca2, "mallory", client=True)
        self.ca1_pem = self._write_ca("ca1", self.ca1)
        self.ca2_pem = self._write_ca("ca2", self.ca2)
        self.client_ca_pem = self._write_ca("client-ca", self.client_ca)
        self.both_pem = d / "ca1+ca2.pem"
        self.both_pem.write_bytes(self.ca1_pem.read_bytes() + self.ca2_pem.read_bytes())
        self.a_cert, self.a_key = self.server_a.write(d, "server-a")
        self.b_cert, self.b_key = self.server_b.write(d, "server-b")
        self.good_cert, self.good_key = self.client_good.write(d, "client-good")
        self.other_cert, self.other_key = self.client_other_ca.write(d, "client-other-ca")

    def _write_ca(self, name: str, ca: Issued) -> Path:
        p = self.dir / f"{name}.pem"
        p.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
        return p


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# ================================================================================================== server + config


def toml_tls(cert=None, key=None, *, port="0", stomp_port="0", extra: dict | None = None) -> str:
    """A [tls] table; values of ``extra`` are raw TOML (quote strings yourself)."""
    lines = ["[tls]"]
    if cert is not None:
        lines.append(f'cert-file = "{cert}"')
    if key is not None:
        lines.append(f'key-file = "{key}"')
    if port is not None:
        lines.append(f"port = {port}")
    if stomp_port is not None:
        lines.append(f"stomp-port = {stomp_port}")
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


def start_tls_server(directory: Path, table: str) -> StarlingServer:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "starling.toml"
    config.write_text(table)
    srv = start_or_fail(StarlingServer(directory / "data", ["--config", str(config)]), f"a server with this config did not start:\n{table}\n")
    if not (srv.https_port and srv.stomps_port):
        listening = [line for line in srv.lines if "listening" in line]
        srv.stop()
        pytest.fail(f"the listening line lacks https= and stomps= ports: {listening}", pytrace=False)
    return srv


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    """One server for the module: [tls] with certificate A (CA 1), both TLS listeners on free ports."""
    srv = start_tls_server(tmp_path_factory.mktemp("tls-server"), toml_tls(pki.a_cert, pki.a_key))
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _tls_server_still_alive(request):
    yield
    assert_still_alive(request, "tls_server", "the TLS server")


@pytest.fixture
def servers(tmp_path):
    """Factory of per-test TLS servers (stopped at teardown)."""
    started: list[StarlingServer] = []

    def make(table: str, name: str = "srv") -> StarlingServer:
        srv = start_tls_server(tmp_path / f"{name}{len(started)}", table)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def closing():
    """Collects clients (anything with close()) and closes them at teardown."""
    items = []

    def add(c):
        items.append(c)
        return c

    yield add
    for c in items:
        try:
            c.close()
        except Exception:
            pass


# ================================================================================================== clients


def client_ctx(cafile: Path | None = None, *, cert: Path | None = None, key: Path | None = None,
               min_version: ssl.TLSVersion | None = None, max_version: ssl.TLSVersion | None = None,
               seclevel0: bool = False) -> ssl.SSLContext:
    """A client context that verifies the server against ``cafile`` (host name checked), or verifies nothing
    when ``cafile`` is None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(str(cafile))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 / TLSv1_1 are deprecated, on purpose here
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
    return ctx


class TlsStomp(RawStompBase):
    """The hand-written STOMP client over a TLS socket. The constructor does the handshake (raises on failure)."""

    def __init__(self, port: int, ctx: ssl.SSLContext, server_hostname: str = HOST, timeout: float = TIMEOUT):
        super().__init__()
        raw = socket.create_connection((HOST, port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self.error: BaseException | None = None

    def _read(self, timeout: float):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError) as e:
            self.error = e
            return b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def peer_cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.sock.getpeercert(binary_form=True))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def wss(srv: StarlingServer, ctx: ssl.SSLContext, compression: str | None = "deflate", path: str = "/ws") -> RawWsStomp:
    return RawWsStomp(f"wss://{HOST}:{srv.https_port}{path}", compression=compression, ssl=ctx, proxy=None)


def ws(srv: StarlingServer, compression: str | None = "deflate") -> RawWsStomp:
    return RawWsStomp(srv.url("/ws"), compression=compression, proxy=None)


def ws_peer_cert(client: RawWsStomp) -> x509.Certificate:
    return x509.load_der_x509_certificate(client.ws.socket.getpeercert(binary_form=True))


def handshake_peer_cert(port: int, ctx: ssl.SSLContext, server_hostname: str = HOST) -> tuple[x509.Certificate, str]:
    """Only the TLS handshake: (the server's certificate, the negotiated version). Raises on failure."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)), s.version()


def https_get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, bytes, x509.Certificate]:
    c = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=TIMEOUT)
    try:
        c.connect()
        cert = x509.load_der_x509_certificate(c.sock.getpeercert(binary_form=True))
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), cert
    finally:
        c.close()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def connected(client: RawStompBase) -> RawStompBase:
    f = client.connect()
    assert f.command == "CONNECTED", f
    return client


def subscribe(client: RawStompBase, dest: str, sub_id: str = "s") -> None:
    r = uid()
    client.send_frame("SUBSCRIBE", [("destination", dest), ("id", sub_id), ("receipt", r)])
    f = client.recv_until("RECEIPT")
    assert f.command == "RECEIPT" and f.headers["receipt-id"] == r, f


def exchange(pub: RawStompBase, sub: RawStompBase, body: bytes, dest: str | None = None, subscribed: bool = False) -> None:
    """``sub`` subscribes (unless already), ``pub`` sends ``body`` with a receipt, ``sub`` gets exactly that body."""
    dest = dest or f"/topic/{uid()}"
    if not subscribed:
        subscribe(sub, dest)
    r = uid()
    pub.send_frame("SEND", [("destination", dest), ("receipt", r)], body)
    f = pub.recv_until("RECEIPT")
    assert f.command == "RECEIPT" and f.headers["receipt-id"] == r, f
    m = sub.recv_until("MESSAGE", 10)
    assert m.command == "MESSAGE", m
    assert m.body == body, f"body differs: got {len(m.body)} bytes {m.body[:60]!r}, sent {len(body)} bytes {body[:60]!r}"
    assert m.headers["destination"] == dest


def stomp_tls_outcome(port: int, ctx: ssl.SSLContext, timeout: float = TIMEOUT) -> str:
    """Try the TLS handshake and a STOMP CONNECT. Returns "CONNECTED"/"ERROR" (a STOMP answer), "handshake failed:
    ...", "closed: ..." (the server ended the connection after the client's handshake finished, as TLS 1.3 does
    when it refuses a client certificate), or "timeout" (no answer at all)."""
    try:
        c = TlsStomp(port, ctx, timeout=timeout)
    except (ssl.SSLError, OSError) as e:
        return f"handshake failed: {e!r}"
    try:
        try:
            c.send_frame("CONNECT", [("accept-version", "1.2"), ("host", HOST)])
        except (ssl.SSLError, OSError) as e:
            return f"closed: {e!r}"
        try:
            return c.recv_frame(timeout).command
        except Closed:
            return f"closed: {c.error!r}"
        except TimeoutError:
            return "timeout"
    finally:
        c.close()


def assert_refused(outcome: str, what: str) -> None:
    assert outcome.startswith(("handshake failed", "closed")), f"{what}: expected the TLS connection to be refused, got {outcome}"


def wss_outcome(srv: StarlingServer, ctx: ssl.SSLContext) -> str:
    try:
        c = wss(srv, ctx)
    except Exception as e:  # any handshake failure (TLS alert, EOF, bad HTTP response)
        return f"failed: {e!r}"
    try:
        return c.connect().command
    except (Closed, TimeoutError, Exception) as e:
        return f"failed after upgrade: {e!r}"
    finally:
        c.close()


def stomp_py_tls(port: int, cafile: Path):
    conn = stomp.Connection12([(HOST, port)], timeout=TIMEOUT, reconnect_attempts_max=1, heartbeats=(0, 0))
    conn.set_ssl(for_hosts=[(HOST, port)], ca_certs=str(cafile))
    col = Collector()
    stomp_connect(conn, col)
    return conn, col


# ================================================================================================== 1. stomp.py over TLS


def test_stomp_py_over_tls(tls_server, pki):
    """stomp.py with set_ssl (the server checked against CA 1, host name 127.0.0.1): CONNECT, SUBSCRIBE with a
    RECEIPT, SEND with a RECEIPT, the MESSAGE with the exact body, in both directions between two TLS clients."""
    sub, sub_col = stomp_py_tls(tls_server.stomps_port, pki.ca1_pem)
    pub, pub_col = stomp_py_tls(tls_server.stomps_port, pki.ca1_pem)
    try:
        for conn in (sub, pub):
            sock = conn.transport.socket
            assert isinstance(sock, ssl.SSLSocket), f"stomp.py is not on TLS: {sock!r}"
            assert sock.version() in ("TLSv1.2", "TLSv1.3"), sock.version()
        assert sub_col.connected[0].headers.get("version") == "1.2"
        dest = f"/topic/{uid()}"
        subscribe_sync(sub, sub_col, dest, "s1")
        bodies = ["hello over TLS", "h\u00e9llo \u2713 caf\u00e9 " * 50]
        for i, body in enumerate(bodies):
            receipt = f"send-{i}-{uid()}"
            pub.send(destination=dest, body=body, headers={"seq": str(i)}, receipt=receipt)
            pub_col.wait_receipt(receipt)
        got = sub_col.wait_messages(2)
        assert [m.body for m in got] == bodies
        assert [m.headers["seq"] for m in got] == ["0", "1"]
        assert [m.headers["destination"] for m in got] == [dest, dest]
        assert not sub_col.errors and not pub_col.errors
    finally:
        stomp_close(sub)
        stomp_close(pub)


# ================================================================================================== 2. wss://


def test_wss_stomp_with_permessage_deflate(tls_server, pki, closing):
    """websockets over wss:// (CA 1 trusted): the v12.stomp subprotocol and permessage-deflate are negotiated,
    STOMP works, and a 200 KB body (incompressible) comes back intact, as does a compressible one."""
    ctx = client_ctx(pki.ca1_pem)
    pub = closing(wss(tls_server, ctx))
    sub = closing(wss(tls_server, ctx))
    for c in (pub, sub):
        ext = c.ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in ext, f"permessage-deflate not negotiated over wss: {ext!r}"
        assert c.ws.subprotocol == "v12.stomp"
        assert c.ws.socket.version() in ("TLSv1.2", "TLSv1.3")
        connected(c)
    dest = f"/topic/{uid()}"
    subscribe(sub, dest)
    exchange(pub, sub, b"small wss body", dest, subscribed=True)
    big = base64.b64encode(os.urandom(150_000))  # 200,000 ASCII bytes, incompressible
    assert len(big) == 200_000
    exchange(pub, sub, big, dest, subscribed=True)
    compressible = b"EURUSD 1.0842 " * 15_000
    exchange(pub, sub, compressible, dest, subscribed=True)
    # and a big one in the other direction
    exchange(sub, pub, big[::-1])


def test_wss_without_compression(tls_server, pki, closing):
    pub = connected(closing(wss(tls_server, client_ctx(pki.ca1_pem), compression=None)))
    sub = connected(closing(wss(tls_server, client_ctx(pki.ca1_pem), compression=None)))
    assert "permessage-deflate" not in pub.ws.response.headers.get("Sec-WebSocket-Extensions", "")
    exchange(pub, sub, b"plain wss")


# ================================================================================================== 3. mixed plain and TLS


def test_plain_and_tls_clients_interoperate(tls_server, pki, closing):
    """ws <-> wss, tcp <-> stomp+tls, stomp+tls <-> wss: every publisher reaches every kind of subscriber."""
    ctx = client_ctx(pki.ca1_pem)
    makers = {
        "ws": lambda: ws(tls_server),
        "wss": lambda: wss(tls_server, ctx),
        "tcp": lambda: RawTcpStomp(tls_server.stomp_port),
        "stomp+tls": lambda: TlsStomp(tls_server.stomps_port, ctx),
    }
    pairs = [("wss", "ws"), ("ws", "wss"), ("stomp+tls", "tcp"), ("tcp", "stomp+tls"), ("stomp+tls", "wss"),
             ("wss", "stomp+tls")]
    for pub_kind, sub_kind in pairs:
        pub = connected(closing(makers[pub_kind]()))
        sub = connected(closing(makers[sub_kind]()))
        exchange(pub, sub, f"from {pub_kind} to {sub_kind} \u2713".encode())

    # one destination, four subscribers of all kinds, one TLS publisher
    dest = f"/topic/{uid()}"
    subs = {}
    for kind, make in makers.items():
        subs[kind] = connected(closing(make()))
        subscribe(subs[kind], dest, "fan")
    pub = connected(closing(TlsStomp(tls_server.stomps_port, ctx)))
    pub.send_frame("SEND", [("destination", dest)], b"fan-out over every listener")
    for kind, s in subs.items():
        m = s.recv_until("MESSAGE")
        assert m.command == "MESSAGE" and m.body == b"fan-out over every listener", (kind, m)


# ================================================================================================== 4. HTTPS routes


def test_https_serves_what_http_serves(tls_server, pki):
    ctx = client_ctx(pki.ca1_pem)
    status, body, cert = https_get(tls_server.https_port, "/healthz", ctx)
    assert (status, body) == (200, b"ok\n")
    assert cert.serial_number == pki.server_a.serial
    for path in ("/", "/healthz", "/definitely-not-here"):
        plain = http_get(tls_server.http_port, path)
        secure = https_get(tls_server.https_port, path, ctx)[:2]
        assert secure == plain, f"GET {path}: https {secure[0]} ({len(secure[1])} bytes) vs http {plain[0]} ({len(plain[1])} bytes)"
    assert http_get(tls_server.http_port, "/")[0] == 200, "the plain listener serves the web client (baseline)"


# ================================================================================================== 5. verification


def test_certificate_verifies_against_the_test_ca(tls_server, pki):
    ca1 = client_ctx(pki.ca1_pem)
    for port in (tls_server.stomps_port, tls_server.https_port):
        cert, _ = handshake_peer_cert(port, ca1, HOST)
        assert cert.serial_number == pki.server_a.serial
        cert, _ = handshake_peer_cert(port, ca1, "localhost")
        assert cert.serial_number == pki.server_a.serial
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake_peer_cert(port, client_ctx(pki.ca2_pem), HOST)
    assert_refused(stomp_tls_outcome(tls_server.stomps_port, client_ctx(pki.ca2_pem)), "client trusting only CA 2")
    assert wss_outcome(tls_server, client_ctx(pki.ca2_pem)).startswith("failed"), "wss client trusting only CA 2"


def test_intermediate_chain_is_served(servers, pki):
    """cert-file with the leaf then the intermediate: a client trusting only the root verifies it."""
    d = pki.dir / f"chain-{uid()}"
    d.mkdir()
    cert, key = pki.server_chained.write(d, "chained")
    assert cert.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    srv = servers(toml_tls(cert, key))
    for port in (srv.stomps_port, srv.https_port):
        got, _ = handshake_peer_cert(port, client_ctx(pki.ca1_pem))
        assert got.serial_number == pki.server_chained.serial
    c = TlsStomp(srv.stomps_port, client_ctx(pki.ca1_pem))
    try:
        chain_len = len(c.sock.get_unverified_chain()) if hasattr(c.sock, "get_unverified_chain") else None
        assert chain_len in (None, 2), f"the server sent {chain_len} certificates, expected leaf + intermediate"
        connected(c)
    finally:
        c.close()


@pytest.mark.parametrize("key_kind,key_fmt", [("ec", "pkcs8"), ("ec", "traditional"), ("rsa", "pkcs8"),
                                               ("rsa", "traditional")])
def test_key_types_and_pem_forms(servers, pki, key_kind, key_fmt):
    """RSA and EC keys, in PKCS#8 ('BEGIN PRIVATE KEY') and traditional ('BEGIN EC/RSA PRIVATE KEY') PEM."""
    leaf = make_leaf(pki.ca1, f"k-{key_kind}", key_kind=key_kind)
    d = pki.dir / f"keys-{uid()}"
    d.mkdir()
    cert, key = leaf.write(d, "server", key_fmt)
    srv = servers(toml_tls(cert, key))
    got, _ = handshake_peer_cert(srv.stomps_port, client_ctx(pki.ca1_pem))
    assert got.serial_number == leaf.serial
    c = TlsStomp(srv.stomps_port, client_ctx(pki.ca1_pem))
    try:
        connected(c)
    finally:
        c.close()


# ================================================================================================== 6. plaintext on TLS port


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def test_plaintext_stomp_on_the_tls_port_is_refused(tls_server, pki, closing):
    for port in (tls_server.stomps_port, tls_server.https_port):
        s = socket.create_connection((HOST, port), timeout=TIMEOUT)
        try:
            s.sendall(b"CONNECT\naccept-version:1.2\nhost:127.0.0.1\n\n\x00")
            data, closed = _read_until_closed(s, TIMEOUT)
        finally:
            s.close()
        assert b"CONNECTED" not in data, data
        assert closed, f"port {port}: plaintext CONNECT on a TLS port: the connection stayed open; received {data!r}"
        assert not data or data[:1] == b"\x15", f"only a TLS alert may come back, got {data[:40]!r}"
    # and plain HTTP to the HTTPS port
    s = socket.create_connection((HOST, tls_server.https_port), timeout=TIMEOUT)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = _read_until_closed(s, TIMEOUT)
    finally:
        s.close()
    assert b"HTTP/1.1 200" not in data and closed, data
    # the server still serves others
    exchange(connected(closing(TlsStomp(tls_server.stomps_port, client_ctx(pki.ca1_pem)))),
             connected(closing(RawTcpStomp(tls_server.stomp_port))), b"still serving")


# ================================================================================================== 7. TLS versions


def _client_can_speak(version: ssl.TLSVersion, pki: Pki) -> str | None:
    """Whether this Python/OpenSSL can do a handshake at exactly ``version`` (checked against a local Python TLS
    server). None if it can, else the reason it cannot."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(pki.a_cert), str(pki.a_key))
    try:
        sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sctx.minimum_version = version
            sctx.maximum_version = version
    except (ValueError, ssl.SSLError) as e:
        return f"cannot configure {version.name}: {e}"
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    result: dict = {}

    def serve():
        listener.settimeout(TIMEOUT)
        try:
            conn, _ = listener.accept()
            with sctx.wrap_socket(conn, server_side=True) as s:
                result["version"] = s.version()
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        _, v = handshake_peer_cert(port, client_ctx(pki.ca1_pem, min_version=version, max_version=version,
                                                     seclevel0=True))
    except Exception as e:  # noqa: BLE001
        return f"this Python/OpenSSL ({ssl.OPENSSL_VERSION}) cannot complete a {version.name} handshake: {e!r}"
    finally:
        t.join(TIMEOUT)
        listener.close()
    return None if v == {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}.get(version.name, v) else f"negotiated {v}"


@pytest.mark.parametrize("old", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["1.0", "1.1"])
def test_tls_1_0_and_1_1_are_refused(tls_server, pki, old):
    reason = _client_can_speak(old, pki)
    if reason:
        pytest.skip(reason)
    ctx = client_ctx(pki.ca1_pem, min_version=old, max_version=old, seclevel0=True)
    for port in (tls_server.stomps_port, tls_server.https_port):
        with pytest.raises(HANDSHAKE_FAILURES):
            handshake_peer_cert(port, ctx)
    assert_refused(stomp_tls_outcome(tls_server.stomps_port, ctx), f"{old.name} client")


def test_default_min_version_allows_1_2_and_1_3(tls_server, pki, closing):
    tls12 = client_ctx(pki.ca1_pem, max_version=ssl.TLSVersion.TLSv1_2)
    tls13 = client_ctx(pki.ca1_pem, min_version=ssl.TLSVersion.TLSv1_3)
    for port in (tls_server.stomps_port, tls_server.https_port):
        assert handshake_peer_cert(port, tls12)[1] == "TLSv1.2"
        assert handshake_peer_cert(port, tls13)[1] == "TLSv1.3"
    a = connected(closing(TlsStomp(tls_server.stomps_port, tls12)))
    b = connected(closing(TlsStomp(tls_server.stomps_port, tls13)))
    exchange(a, b, b"1.2 -> 1.3")


def test_min_version_1_3(servers, pki, closing):
    srv = servers(toml_tls(pki.a_cert, pki.a_key, extra={"min-version": '"1.3"'}))
    tls12 = client_ctx(pki.ca1_pem, max_version=ssl.TLSVersion.TLSv1_2)
    tls13 = client_ctx(pki.ca1_pem, min_version=ssl.TLSVersion.TLSv1_3)
    for port in (srv.stomps_port, srv.https_port):
        with pytest.raises(HANDSHAKE_FAILURES):
            handshake_peer_cert(port, tls12)
        assert handshake_peer_cert(port, tls13)[1] == "TLSv1.3"
    assert_refused(stomp_tls_outcome(srv.stomps_port, tls12), "TLS 1.2 client with min-version 1.3")
    assert wss_outcome(srv, tls12).startswith("failed")
    assert https_get(srv.https_port, "/healthz", tls13)[:2] == (200, b"ok\n")
    a = connected(closing(TlsStomp(srv.stomps_port, tls13)))
    b = connected(closing(wss(srv, tls13)))
    exchange(a, b, b"tls 1.3 only")
    if _client_can_speak(ssl.TLSVersion.TLSv1_1, pki) is None:
        with pytest.raises(HANDSHAKE_FAILURES):
            handshake_peer_cert(srv.stomps_port, client_ctx(pki.ca1_pem, min_version=ssl.TLSVersion.TLSv1_1,
                                                            max_version=ssl.TLSVersion.TLSv1_1, seclevel0=True))


# ================================================================================================== 8. mutual TLS


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    srv = start_tls_server(tmp_path_factory.mktemp("mtls"),
                           toml_tls(pki.a_cert, pki.a_key, extra={"client-ca-file": f'"{pki.client_ca_pem}"'}))
    yield srv
    srv.stop()


@pytest.mark.parametrize("tls_max", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_mutual_tls(mtls_server, pki, closing, tls_max):
    srv = mtls_server
    none = client_ctx(pki.ca1_pem, max_version=tls_max)
    other = client_ctx(pki.ca1_pem, cert=pki.other_cert, key=pki.other_key, max_version=tls_max)
    server_cert_as_client = client_ctx(pki.ca1_pem, cert=pki.a_cert, key=pki.a_key, max_version=tls_max)
    good = client_ctx(pki.ca1_pem, cert=pki.good_cert, key=pki.good_key, max_version=tls_max)

    assert_refused(stomp_tls_outcome(srv.stomps_port, none), "no client certificate")
    assert_refused(stomp_tls_outcome(srv.stomps_port, other), "client certificate from CA 2")
    assert_refused(stomp_tls_outcome(srv.stomps_port, server_cert_as_client), "client certificate from CA 1")
    assert wss_outcome(srv, none).startswith("failed"), "wss without a client certificate"
    assert wss_outcome(srv, other).startswith("failed"), "wss with a client certificate from CA 2"
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
        https_get(srv.https_port, "/healthz", none)

    a = connected(closing(TlsStomp(srv.stomps_port, good)))
    b = connected(closing(wss(srv, good)))
    if tls_max:
        assert a.sock.version() == "TLSv1.2"
    exchange(a, b, b"mutual tls works")
    exchange(b, a, b"both ways")
    assert https_get(srv.https_port, "/healthz", good)[:2] == (200, b"ok\n")
    # the plain listeners are not affected by client-ca-file
    exchange(connected(closing(RawTcpStomp(srv.stomp_port))), connected(closing(ws(srv))), b"plain still open")
    assert srv.alive()


def test_stomp_py_with_client_certificate(mtls_server, pki):
    port = mtls_server.stomps_port
    conn = stomp.Connection12([(HOST, port)], timeout=TIMEOUT, reconnect_attempts_max=1, heartbeats=(0, 0))
    conn.set_ssl(for_hosts=[(HOST, port)], ca_certs=str(pki.ca1_pem), cert_file=str(pki.good_cert),
                 key_file=str(pki.good_key))
    col = Collector()
    try:
        stomp_connect(conn, col)
        dest = f"/queue/{uid()}"
        subscribe_sync(conn, col, dest, "q")
        conn.send(destination=dest, body="with a client cert")
        assert [m.body for m in col.wait_messages(1)] == ["with a client cert"]
    finally:
        stomp_close(conn)


# ================================================================================================== 9. SIGHUP reload


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sighup(srv: StarlingServer, expect: str) -> str:
    """SIGHUP, then wait for a line containing ``expect`` ("tls reloaded" or "tls reload failed") logged after it;
    fail if the opposite outcome is logged instead."""
    start = srv.line_count()
    srv.proc.send_signal(signal.SIGHUP)
    other = "tls reload failed" if expect == "tls reloaded" else "tls reloaded"
    try:
        line = srv.wait_for_line(expect, start, TIMEOUT)
    except AssertionError:
        if not srv.alive():
            raise AssertionError(f"the server exited on SIGHUP (code {srv.proc.returncode}):\n{srv.output()}") from None
        raise
    with srv._lock:
        opposite = [ln for ln in srv.lines[start:] if other in ln]
    assert not opposite, f"expected {expect!r} after SIGHUP, but also got {opposite}"
    return line


def test_sighup_reloads_the_certificate(servers, pki, tmp_path, closing):
    d = tmp_path / "files"
    d.mkdir()
    cert, key = d / "server.pem", d / "server.key"
    cert.write_bytes(pki.server_a.cert_pem())
    key.write_bytes(pki.server_a.key_pem())
    srv = servers(toml_tls(cert, key))
    both = client_ctx(pki.both_pem)
    A, B = pki.server_a.serial, pki.server_b.serial

    def serials() -> list[int]:
        """The serial a new connection sees: TLS handshake on each port, an HTTPS request, a wss connection."""
        fresh_wss = wss(srv, both)
        try:
            wss_serial = ws_peer_cert(fresh_wss).serial_number
        finally:
            fresh_wss.close()
        return [handshake_peer_cert(srv.stomps_port, both)[0].serial_number,
                handshake_peer_cert(srv.https_port, both)[0].serial_number,
                https_get(srv.https_port, "/healthz", both)[2].serial_number,
                wss_serial]

    assert serials() == [A] * 4
    old_tls = connected(closing(TlsStomp(srv.stomps_port, both)))
    old_wss = connected(closing(wss(srv, both)))
    assert old_tls.peer_cert().serial_number == A and ws_peer_cert(old_wss).serial_number == A
    t_tls, t_wss = f"/topic/{uid()}", f"/topic/{uid()}"
    subscribe(old_tls, t_tls, "old-tls")
    subscribe(old_wss, t_wss, "old-wss")

    def old_connections_work(tag: str) -> None:
        exchange(old_wss, old_tls, f"{tag}: wss -> tls".encode(), t_tls, subscribed=True)
        exchange(old_tls, old_wss, f"{tag}: tls -> wss".encode(), t_wss, subscribed=True)

    old_connections_work("before")

    # -- A -> B (CA 2, RSA key)
    _replace(cert, pki.server_b.cert_pem())
    _replace(key, pki.server_b.key_pem())
    _sighup(srv, "tls reloaded")
    assert serials() == [B] * 4, "new connections get certificate B after the reload"
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake_peer_cert(srv.stomps_port, client_ctx(pki.ca1_pem))
    old_connections_work("after reload")
    new = connected(closing(TlsStomp(srv.stomps_port, both)))
    assert new.peer_cert().serial_number == B
    exchange(new, old_tls, b"new (B) -> old (A)", t_tls, subscribed=True)

    # -- failed reloads: the server keeps certificate B and keeps serving
    b_cert, b_key = pki.server_b.cert_pem(), pki.server_b.key_pem()
    failures = [
        ("garbage key-file", b_cert, b"this is not a private key\n", ["key"]),
        ("PEM-looking garbage key-file", b_cert,
         b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n", ["key"]),
        ("key not matching the cert", pki.server_a.cert_pem(), b_key, None),
        ("garbage cert-file", b"garbage\n", b_key, ["cert", "server.pem"]),
        ("missing cert-file", None, b_key, ["cert", "server.pem"]),
    ]
    for what, cert_data, key_data, reason_words in failures:
        if cert_data is None:
            cert.unlink()
        else:
            _replace(cert, cert_data)
        _replace(key, key_data)
        line = _sighup(srv, "tls reload failed").replace(str(tmp_path), "<tmp>")
        rest = line.split("tls reload failed", 1)[1]
        assert rest.strip(' "'), f"{what}: the failure line gives no reason: {line!r}"
        if reason_words:
            assert any(w in rest.lower() for w in reason_words), (
                f"{what}: the reason should name the file at fault (one of {reason_words}): {line!r}")
        assert srv.alive()
        assert serials() == [B] * 4, f"{what}: new connections must still get certificate B"
        old_connections_work(what)

    # -- and a good reload after the failures (back to A)
    _replace(cert, pki.server_a.cert_pem())
    _replace(key, pki.server_a.key_pem())
    _sighup(srv, "tls reloaded")
    assert serials() == [A] * 4
    old_connections_work("back to A")
    assert new.peer_cert().serial_number == B
    exchange(old_tls, new, b"old -> newer", f"/topic/{uid()}")
    exchange(connected(closing(RawTcpStomp(srv.stomp_port))), connected(closing(ws(srv))), b"plain unaffected")


def test_sighup_reloads_the_client_ca(servers, pki, tmp_path, closing):
    """client-ca-file is re-read on SIGHUP: after switching it from the client CA to CA 2, a CA 2 client
    certificate is accepted and the first one refused; connections made before stay up."""
    ca_file = tmp_path / "clients.pem"
    ca_file.write_bytes(pki.client_ca_pem.read_bytes())
    srv = servers(toml_tls(pki.a_cert, pki.a_key, extra={"client-ca-file": f'"{ca_file}"'}))
    first = client_ctx(pki.ca1_pem, cert=pki.good_cert, key=pki.good_key)
    second = client_ctx(pki.ca1_pem, cert=pki.other_cert, key=pki.other_key)
    assert stomp_tls_outcome(srv.stomps_port, first) == "CONNECTED"
    assert_refused(stomp_tls_outcome(srv.stomps_port, second), "CA 2 client before the reload")
    old = connected(closing(TlsStomp(srv.stomps_port, first)))

    _replace(ca_file, pki.ca2_pem.read_bytes())
    _sighup(srv, "tls reloaded")
    assert stomp_tls_outcome(srv.stomps_port, second) == "CONNECTED"
    assert_refused(stomp_tls_outcome(srv.stomps_port, first), "client-CA client after the reload")
    new = connected(closing(TlsStomp(srv.stomps_port, second)))
    exchange(new, old, b"new client CA -> old connection")

    _replace(ca_file, b"not a certificate\n")
    line = _sighup(srv, "tls reload failed")
    assert srv.alive(), line
    assert stomp_tls_outcome(srv.stomps_port, second) == "CONNECTED", "a failed reload keeps the CA 2 client CA"
    assert_refused(stomp_tls_outcome(srv.stomps_port, first), "client-CA client after a failed reload")


# ================================================================================================== 10. config errors


def _tls_start_failure(directory: Path, table: str) -> str:
    """Start with this config; it must exit non-zero before listening. Returns its output, with the tmp path
    replaced by <dir> so that path names cannot satisfy the key-name checks."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "starling.toml"
    config.write_text(table)
    srv = StarlingServer(directory / "data", ["--config", str(config)])
    try:
        srv.start()
    except ServerStartError as e:
        srv.kill()
        assert srv.proc is not None and srv.proc.returncode not in (0, None), str(e)
        return str(e).replace(str(directory), "<dir>")
    listening = [line for line in srv.lines if "listening" in line]
    srv.stop()
    raise AssertionError(f"the server started although the config is wrong:\n{table}\nlistening: {listening}")


BAD_CONFIG_IDS = [
    "cert-file-missing", "cert-file-is-a-directory", "cert-file-garbage", "cert-file-is-a-key",
    "key-file-missing", "key-file-garbage", "key-file-is-a-cert", "key-does-not-match-cert",
    "no-cert-file", "no-key-file", "empty-table", "unknown-key", "unknown-key-ciphers",
    "port-too-big", "port-negative", "port-word", "stomp-port-too-big", "stomp-port-word",
    "min-version-1.1", "min-version-1.0", "min-version-word", "client-ca-file-missing", "client-ca-file-garbage",
]


def _bad_config(case_id: str, p: Pki, d: Path) -> tuple[str, list[str]]:
    """([tls] table, accepted patterns: the output must match one of them)."""
    garbage = d / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    missing = d / "missing.pem"
    A, K = p.a_cert, p.a_key
    port = r"(?<![-\w])port\b"
    cases = {
        "cert-file-missing": (toml_tls(missing, K), [r"cert-file"]),
        "cert-file-is-a-directory": (toml_tls(d, K), [r"cert-file"]),
        "cert-file-garbage": (toml_tls(garbage, K), [r"cert-file"]),
        "cert-file-is-a-key": (toml_tls(K, K), [r"cert-file"]),
        "key-file-missing": (toml_tls(A, missing), [r"key-file"]),
        "key-file-garbage": (toml_tls(A, garbage), [r"key-file"]),
        "key-file-is-a-cert": (toml_tls(A, A), [r"key-file"]),
        "key-does-not-match-cert": (toml_tls(A, p.b_key), [r"key-file", r"cert-file"]),
        "no-cert-file": (toml_tls(None, K), [r"cert-file"]),
        "no-key-file": (toml_tls(A, None), [r"key-file"]),
        "empty-table": ("[tls]\n", [r"cert-file", r"key-file"]),
        "unknown-key": (toml_tls(A, K, extra={"cert-flie": f'"{A}"'}),
                        [r"unknown \[tls\] key.*cert-flie|cert-flie.*unknown \[tls\] key"]),
        "unknown-key-ciphers": (toml_tls(A, K, extra={"ciphers": '"HIGH"'}),
                                [r"unknown \[tls\] key.*ciphers|ciphers.*unknown \[tls\] key"]),
        "port-too-big": (toml_tls(A, K, port="70000"), [port]),
        "port-negative": (toml_tls(A, K, port="-1"), [port]),
        "port-word": (toml_tls(A, K, port='"https"'), [port]),
        "stomp-port-too-big": (toml_tls(A, K, stomp_port="65536"), [r"stomp-port"]),
        "stomp-port-word": (toml_tls(A, K, stomp_port='"on"'), [r"stomp-port"]),
        "min-version-1.1": (toml_tls(A, K, extra={"min-version": '"1.1"'}), [r"min-version"]),
        "min-version-1.0": (toml_tls(A, K, extra={"min-version": '"1.0"'}), [r"min-version"]),
        "min-version-word": (toml_tls(A, K, extra={"min-version": '"tls1.3"'}), [r"min-version"]),
        "client-ca-file-missing": (toml_tls(A, K, extra={"client-ca-file": f'"{missing}"'}), [r"client-ca-file"]),
        "client-ca-file-garbage": (toml_tls(A, K, extra={"client-ca-file": f'"{garbage}"'}), [r"client-ca-file"]),
    }
    assert sorted(cases) == sorted(BAD_CONFIG_IDS)
    return cases[case_id]


@pytest.mark.parametrize("case_id", BAD_CONFIG_IDS)
def test_config_error_stops_the_start(pki, tmp_path, case_id):
    """A bad [tls] table: a non-zero exit before listening, with a message naming the key."""
    table, patterns = _bad_config(case_id, pki, tmp_path)
    out = _tls_start_failure(tmp_path / "run", table)
    out = out.replace(str(tmp_path), "<tmp>").replace(str(pki.dir), "<pki>")
    assert any(re.search(p, out, re.IGNORECASE | re.DOTALL) for p in patterns), (
        f"the message does not name the key (expected one of {patterns}):\n  config: {table!r}\n  output: {out[-800:]}")


def test_tls_listeners_can_be_off(servers, pki):
    """port = "off" / stomp-port = "off": that listener is absent from the listening line; the other works."""
    for table, want_https, want_stomps in [
        (toml_tls(pki.a_cert, pki.a_key, port='"off"'), False, True),
        (toml_tls(pki.a_cert, pki.a_key, stomp_port='"off"'), True, False),
    ]:
        d = pki.dir / f"off-{uid()}"
        d.mkdir()
        (d / "starling.toml").write_text(table)
        srv = StarlingServer(d / "data", ["--config", str(d / "starling.toml")])
        try:
            srv.start()
            listening = [line for line in srv.lines if "listening" in line]
            assert (srv.https_port is not None, srv.stomps_port is not None) == (want_https, want_stomps), listening
            if want_stomps:
                assert stomp_tls_outcome(srv.stomps_port, client_ctx(pki.ca1_pem)) == "CONNECTED"
            if want_https:
                assert https_get(srv.https_port, "/healthz", client_ctx(pki.ca1_pem))[:2] == (200, b"ok\n")
            assert http_get(srv.http_port, "/healthz") == (200, b"ok\n")
        finally:
            srv.stop()


def test_listening_line_names_both_tls_listeners_on_the_host(tls_server):
    line = next(line for line in tls_server.lines if "listening" in line)
    assert re.search(r"\bhttps=\"?127\.0\.0\.1:\d+", line), line
    assert re.search(r"\bstomps=\"?127\.0\.0\.1:\d+", line), line
    assert re.search(r"\bhttp=\"?127\.0\.0\.1:\d+", line) and re.search(r"\bstomp=\"?127\.0\.0\.1:\d+", line), line
    assert len({tls_server.http_port, tls_server.stomp_port, tls_server.https_port, tls_server.stomps_port}) == 4


# ================================================================================================== 11. bad handshakes


def _client_hello() -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:8]
    return hello


def test_server_survives_a_flood_of_bad_handshakes(servers, pki, closing):
    srv = servers(toml_tls(pki.a_cert, pki.a_key))
    hello = _client_hello()
    wrong_ca = client_ctx(pki.ca2_pem)

    def garbage(port):
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
            s.sendall(b"GARBAGE!" + os.urandom(2040))  # never a valid TLS record header
            _, closed = _read_until_closed(s, TIMEOUT)
            return "closed" if closed else "left open"

    def bad_record(port):  # a handshake record header announcing an absurd length, then junk
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
            s.sendall(b"\x16\x03\x01\xff\xff" + os.urandom(64) + b"\x00" * 4)
            s.sendall(b"\x16\x03\x03\x00\x05\x01\x00\x00\xff\xff")
            return "sent"

    def half_hello(port):
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
            s.sendall(hello[: len(hello) // 2])
            return "sent"

    def hello_then_reset(port):
        s = socket.create_connection((HOST, port), timeout=TIMEOUT)
        s.sendall(hello)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        s.close()
        return "reset"

    def connect_close(port):
        socket.create_connection((HOST, port), timeout=TIMEOUT).close()
        return "closed"

    def untrusted(port):
        try:
            handshake_peer_cert(port, wrong_ca)
        except ssl.SSLCertVerificationError:
            return "verify failed"
        return "unexpectedly verified"

    def plaintext_http(port):
        with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data, closed = _read_until_closed(s, TIMEOUT)
            return "closed" if closed and b"HTTP/1.1 200" not in data else f"answered {data[:40]!r}"

    kinds = [garbage, bad_record, half_hello, hello_then_reset, connect_close, untrusted, plaintext_http]
    jobs = [(kinds[i % len(kinds)], [srv.stomps_port, srv.https_port][i % 2]) for i in range(50)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(lambda j: (j[0].__name__, j[1], j[0](j[1])), jobs))
    bad = [r for r in results if r[2] in ("left open", "unexpectedly verified") or r[2].startswith("answered")]
    assert not bad, f"unexpected outcomes: {bad}"
    assert srv.alive(), srv.output()

    # plain clients and TLS clients are all served
    assert http_get(srv.http_port, "/healthz") == (200, b"ok\n")
    exchange(connected(closing(RawTcpStomp(srv.stomp_port))), connected(closing(ws(srv))), b"plain after flood")
    ctx = client_ctx(pki.ca1_pem)
    exchange(connected(closing(TlsStomp(srv.stomps_port, ctx))), connected(closing(wss(srv, ctx))), b"tls after flood")
    assert https_get(srv.https_port, "/healthz", ctx)[:2] == (200, b"ok\n")
    assert srv.alive()
