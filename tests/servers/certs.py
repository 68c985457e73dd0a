"""TLS for the test servers: one process-wide trustme CA, so one `ca_file` verifies them all."""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from servers import loopback


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificates:
    """A test CA and a server certificate for `localhost` and 127.0.0.1, as PEM files."""

    ca_file: Path
    cert_file: Path  # the server's certificate chain
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_certificates(directory: Path) -> Certificates:
    """A new CA and server certificate, written under `directory` (0644: Dovecot reads them)."""
    import trustme  # test-only dependency; imported late so the sink process skips it

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", loopback.HOST)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "cert.pem": b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        "key.pem": cert.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o644)
    return Certificates(
        ca_file=directory / "ca.pem",
        cert_file=directory / "cert.pem",
        key_file=directory / "key.pem",
    )


_shared: Certificates | None = None
_shared_lock = threading.Lock()


def shared_certificates() -> Certificates:
    """The process-wide test certificates (made once, removed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            directory = Path(tempfile.mkdtemp(prefix="dripd-certs-"))
            directory.chmod(0o755)
            atexit.register(shutil.rmtree, directory, True)
            _shared = make_certificates(directory)
        return _shared
