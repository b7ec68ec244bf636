"""The design AMOSKYS replaces, rebuilt in ~50 lines as the baseline: one unary RPC per event, a
fresh mTLS channel per event, a new SQLite connection and an fsync (commit) per request.

    python benchmarks/baseline_predecessor.py serve PKI_DIR DB PORT
    python benchmarks/baseline_predecessor.py publish BUNDLE_DIR PORT N   -> prints events/s
"""

import sqlite3
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc

METHOD = "/baseline.Bus/Publish"


def serve(pki: Path, db: str, port: int) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body BLOB)")
    con.close()

    def publish(request: bytes, context: grpc.ServicerContext) -> bytes:
        c = sqlite3.connect(db)  # a new connection per request, as the predecessor did
        c.execute("PRAGMA synchronous=FULL")
        c.execute("INSERT INTO events (body) VALUES (?)", (request,))
        c.commit()  # fsync per event
        c.close()
        return b"OK"

    handler = grpc.method_handlers_generic_handler(
        "baseline.Bus", {"Publish": grpc.unary_unary_rpc_method_handler(publish)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10), handlers=[handler])
    creds = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.crt").read_bytes())],
        root_certificates=(pki / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    server.wait_for_termination()


def publish(bundle: Path, port: int, n: int) -> None:
    creds = grpc.ssl_channel_credentials(
        (bundle / "ca.crt").read_bytes(),
        (bundle / "client.key").read_bytes(),
        (bundle / "client.crt").read_bytes(),
    )
    body = b"x" * 200
    t0 = time.monotonic()
    for _ in range(n):
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:  # a fresh channel per event
            channel.unary_unary(METHOD)(body, timeout=10, wait_for_ready=True)
    print(f"{n / (time.monotonic() - t0):.1f}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        publish(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
