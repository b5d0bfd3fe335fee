"""The outbound budget: a subscriber that stops reading is disconnected; the others keep receiving everything."""

from __future__ import annotations

import time

from e2e_helpers import RawTcpStomp, uid


def test_stalled_subscriber_is_disconnected_and_others_get_everything(own_server):
    """A TCP subscriber that never reads is cut off once its queued bytes pass max-pending-bytes (the ERROR saying
    so is queued behind what it did not read, so it is best effort); a reading subscriber on the same topic gets
    every message in order."""
    srv = own_server(["--max-pending-bytes", "65536"])
    topic = f"/topic/{uid()}"
    body = "x" * 50_000
    count = 400  # 20 MB: far more than the kernel's socket buffers (a few MB each way) and the 64 KiB budget

    stalled = RawTcpStomp(srv.stomp_port)
    stalled.connect("1.2")
    stalled.send_frame("SUBSCRIBE", {"id": "s", "destination": topic, "receipt": "r"})
    assert stalled.recv_until("RECEIPT").headers["receipt-id"] == "r"

    reader = RawTcpStomp(srv.stomp_port)
    reader.connect("1.2")
    reader.send_frame("SUBSCRIBE", {"id": "s", "destination": topic, "receipt": "r"})
    assert reader.recv_until("RECEIPT").headers["receipt-id"] == "r"

    publisher = RawTcpStomp(srv.stomp_port)
    publisher.connect("1.2")
    received = []
    for i in range(count):
        publisher.send_frame("SEND", {"destination": topic, "x-seq": str(i)}, body)
        # Read as we go so the reader is never the slow one.
        for frame in reader.drain(0.001):
            received.append(int(frame.headers["x-seq"]))
    publisher.send_frame("SEND", {"destination": topic, "x-seq": "last", "receipt": "done"}, "end")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not received or received[-1] != count - 1):
        for frame in reader.drain(0.2):
            if frame.headers.get("x-seq") not in (None, "last"):
                received.append(int(frame.headers["x-seq"]))
    assert received == list(range(count)), f"reader got {len(received)} of {count} messages"

    # The stalled client now reads what reached it before the server cut it off, then the end of the stream.
    frames = stalled.wait_closed(30)
    commands = [f.command for f in frames]
    assert commands.count("MESSAGE") < count, "the stalled subscriber was not cut off"
    for frame in frames:
        if frame.command == "ERROR":
            assert "slow consumer" in frame.headers.get("message", "")
    for client in (stalled, reader, publisher):
        client.close()
