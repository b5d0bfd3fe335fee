#!/usr/bin/env python3
"""Recovery time of the embedded store: writes N stored messages straight into a fresh starling.db (the schema
the server creates), starts a release server on it, and reads the "store recovered" log line (messages, ms).

    benchmarks/recovery.py [--messages 1000000] [--queues 10] [--body 100] [--starling .build/release/starling]
"""
from __future__ import annotations

import argparse
import os
import re
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time


def header_blob(headers: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        for part in (name, value):
            data = part.encode()
            out += struct.pack("<I", len(data)) + data
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--starling", default=".build/release/starling")
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="starling-recovery-")
    # The schema is the one SQLiteMessageStore creates (schema version 1).
    db = sqlite3.connect(os.path.join(directory, "starling.db"))
    db.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL,
            destination TEXT NOT NULL, headers BLOB NOT NULL, body BLOB NOT NULL, expires_at INTEGER,
            delivery_count INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE IF NOT EXISTS bindings(queue TEXT PRIMARY KEY, pattern TEXT NOT NULL);
        PRAGMA user_version=1;
    """)
    body = b"x" * args.body
    headers = header_blob([("persistent", "true"), ("content-type", "text/plain")])
    began = time.monotonic()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO messages(id, queue, message_id, destination, headers, body, expires_at, delivery_count) VALUES (?,?,?,?,?,?,NULL,0)",
        ((i, f"/queue/recovery{i % args.queues}", f"m-{i}", f"/queue/recovery{i % args.queues}", headers, body)
         for i in range(1, args.messages + 1)))
    db.commit()
    db.close()
    print(f"wrote {args.messages} messages in {time.monotonic() - began:.1f} s to {directory}", file=sys.stderr)

    proc = subprocess.Popen([args.starling, "--port", "0", "--stomp-port", "off", "--data-dir", directory],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    recovered = None
    rss = None
    for line in proc.stdout:
        if "store recovered" in line:
            recovered = line.strip()
        if "listening" in line:
            wall = time.monotonic() - started
            with open(f"/proc/{proc.pid}/status") as status:
                for entry in status:
                    if entry.startswith("VmRSS:"):
                        rss = int(entry.split()[1]) * 1024
            break
    proc.terminate()
    proc.wait(30)
    if not recovered:
        print("no 'store recovered' line", file=sys.stderr)
        return 1
    ms = int(re.search(r"ms=(\d+)", recovered).group(1))
    count = int(re.search(r"messages=(\d+)", recovered).group(1))
    print(f"recovered {count} messages in {ms} ms ({count / max(ms, 1) * 1000:,.0f} msgs/s); "
          f"start to listening {wall:.2f} s; server RSS after recovery {rss / 1048576:.0f} MiB")
    subprocess.run(["rm", "-rf", directory])
    return 0


if __name__ == "__main__":
    sys.exit(main())
