"""A private rsyslogd (Debian's `rsyslog` and `rsyslog-gnutls`) listening on UDP, TCP and TLS (gtls
driver, certificates made here) on free loopback ports, parsing what it receives (mmpstrucdata turns
the structured data into JSON) and writing one line per message to a file per listener."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support import require_file, require_tool

#: The fields rsyslog parsed out of each message, in this order, "|"-separated (the message last).
FIELDS = (
    "input", "pri", "facility", "severity", "timestamp", "hostname", "app_name", "procid", "msgid", "sd",
    "raw_sd", "msg",
)  # fmt: skip
_TEMPLATE = "|".join(
    f"%{p}%"
    for p in (
        "inputname", "pri", "syslogfacility-text", "syslogseverity-text", "timereported:::date-rfc3339",
        "hostname", "app-name", "procid", "msgid", "$!rfc5424-sd", "structured-data", "msg",
    )
)  # fmt: skip


def gtls_module() -> Path:
    found = sorted(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    return found[0] if found else Path(f"/usr/lib/{multiarch}/rsyslog/lmnsd_gtls.so")


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syslog test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class Rsyslog:
    """rsyslogd in `folder`; `start()` again after `stop()` listens on the same ports."""

    folder: Path
    udp_port: int = 0
    tcp_port: int = 0
    tls_port: int = 0
    ca_file: Path = Path()
    process: subprocess.Popen[bytes] | None = None
    _probes: int = field(default=0)

    @classmethod
    def make(cls, folder: Path) -> Rsyslog:
        """Skips (fails under CI=true) without rsyslog and rsyslog-gnutls; the test must be marked
        needs_tool."""
        require_tool("rsyslogd", "rsyslog")
        require_file(gtls_module(), "rsyslog-gnutls")
        folder.mkdir(parents=True, exist_ok=True)
        server = cls(
            folder,
            udp_port=_free_port(socket.SOCK_DGRAM),
            tcp_port=_free_port(socket.SOCK_STREAM),
            tls_port=_free_port(socket.SOCK_STREAM),
        )
        server.ca_file, cert, key = make_certs(folder)
        lines = [
            f'global(workDirectory="{folder}" maxMessageSize="64k"',
            f'       defaultNetstreamDriverCAFile="{server.ca_file}"',
            f'       defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}")',
            'module(load="imudp")',
            'module(load="imtcp" maxSessions="50")',
            'module(load="mmpstrucdata")',
            f'template(name="fields" type="string" string="{_TEMPLATE}\\n")',
        ]
        for name in ("udp", "tcp", "tls"):
            lines.append(
                f'ruleset(name="{name}") {{ action(type="mmpstrucdata" sd_name.lowercase="off") '
                f'action(type="omfile" file="{folder / name}.log" template="fields") }}'
            )
        lines += [
            f'input(type="imudp" address="127.0.0.1" port="{server.udp_port}" ruleset="udp")',
            f'input(type="imtcp" address="127.0.0.1" port="{server.tcp_port}" ruleset="tcp")',
            f'input(type="imtcp" address="127.0.0.1" port="{server.tls_port}" ruleset="tls" '
            'streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")',
        ]
        (folder / "rsyslog.conf").write_text("\n".join(lines) + "\n")
        return server

    def start(self, within: float = 15.0) -> None:
        """Start rsyslogd and return once it takes messages on all three listeners (blocking)."""
        command = [
            "rsyslogd",
            "-n",
            "-f",
            str(self.folder / "rsyslog.conf"),
            "-i",
            str(self.folder / "rsyslogd.pid"),
        ]
        with (self.folder / "rsyslogd.out").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + within
        waiting = {self.tcp_port, self.tls_port}
        probe = f"probe-{os.getpid()}-{self._probes}"
        self._probes += 1
        pause = 0.005
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"rsyslogd exited: {(self.folder / 'rsyslogd.out').read_text()}")
            for port in list(waiting):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        waiting.discard(port)
            if not waiting:  # UDP has no handshake: a probe until one shows up in the file
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(f"<14>1 - - probe - - - {probe}".encode(), ("127.0.0.1", self.udp_port))
                if any(line["msg"] == probe for line in self.lines("udp", probes=True)):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"rsyslogd not listening after {within} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def lines(self, listener: str, *, probes: bool = False) -> list[dict[str, Any]]:
        """What rsyslog wrote for one listener ("udp", "tcp", "tls"), each line by FIELDS (`sd`
        decoded from JSON); the readiness probes left out unless asked for."""
        path = self.folder / f"{listener}.log"
        if not path.exists():
            return []
        out = []
        text = path.read_text(encoding="utf-8")
        for raw in text[: text.rfind("\n") + 1].splitlines():  # a line rsyslog is still writing waits
            parts = raw.split("|", len(FIELDS) - 1)
            line: dict[str, Any] = dict(zip(FIELDS, parts, strict=True))
            if line["app_name"] == "probe" and not probes:
                continue
            line["sd"] = json.loads(line["sd"]) if line["sd"].startswith("{") else {}
            out.append(line)
        return out
