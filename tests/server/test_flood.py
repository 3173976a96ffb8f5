"""Large submits: the server's memory stays bounded, its event loop never decodes, other clients keep being served.

The flood test measures the server's process (not its worker) from
``/proc/<pid>/status``: ``VmRSS`` before the flood, ``VmHWM`` (peak resident
set) after it. Meanwhile a second client pings and times every answer, and the
flooding client must get an answer to every one of its submits (its connection,
heartbeats included, survives the flood).

Run as a script for a bigger flood and a printed report:
``python -m tests.server.test_flood [--submits 24] [--images 3] [--side 2048] [--budget-mib 128]``
(``--budget-mib 0`` leaves the server's default budget, which is what a server without one needs).
"""

from __future__ import annotations

import argparse
import io
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq
from PIL import Image

from blender_addon.client import (
    Accepted,
    Pong,
    Progress,
    Rejected,
    Result,
    ResultReady,
    ServerConnection,
    StateChanged,
    Welcome,
)
from blender_addon.protocol.codec import decode, encode
from blender_addon.protocol.settings import JobSettings

from .harness import ServerProcess, collect, events_of, wait_ready
from .test_hostile_input import CLIENT_LIMITS
from .pipelines import scripted

MiB = 1024 * 1024


def vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def big_png(side: int) -> bytes:
    """A real ``side`` x ``side`` RGBA PNG of noise, stored without compression: big on the wire, cheap to make."""
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 4), dtype=np.uint8)).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


@dataclass
class FloodReport:
    baseline_kib: int = 0
    peak_kib: int = 0
    submit_bytes: int = 0
    answers: dict[str, str] = field(default_factory=dict)  # job id -> "accepted" or the rejection code
    ping_latencies: list[float] = field(default_factory=list)
    ping_lost: int = 0
    flood_s: float = 0.0

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.baseline_kib) / 1024


class Pinger(threading.Thread):
    """A second client pinging every 20 ms during the flood; records how long each answer took."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.lost = 0

    def run(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.address)
        try:
            i = 0
            while not self.stop.is_set():
                i += 1
                token = f"p{i}"
                sent = time.monotonic()
                sock.send_multipart(encode("ping", {"token": token}))
                deadline = sent + 10.0
                while time.monotonic() < deadline:
                    if sock.poll(50):
                        msg = decode(sock.recv_multipart(), CLIENT_LIMITS)
                        if msg.type == "pong" and msg.fields.get("token") == token:
                            self.latencies.append(time.monotonic() - sent)
                            break
                else:
                    self.lost += 1
                time.sleep(0.02)
        finally:
            sock.close(0)
            context.term()


def flood(server: ServerProcess, *, submits: int, images: list[bytes], answer_timeout_s: float = 120.0) -> FloodReport:
    """Send ``submits`` jobs as fast as ZeroMQ takes them, then wait for one answer to each."""
    report = FloodReport(submit_bytes=sum(len(i) for i in images))
    report.baseline_kib = vm_kib(server.pid, "VmRSS")
    pinger = Pinger(server.address)
    pinger.start()
    time.sleep(0.3)  # the pinger is connected and answered before the flood starts
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    ids = [f"flood-{uuid.uuid4().hex[:10]}" for _ in range(submits)]
    try:
        started = time.monotonic()
        for jid in ids:
            # The same image buffers every time and zero-copy: the client itself stays small.
            frames = encode("submit", {"job_id": jid, "settings": {"options": {"behaviour": "slow"}, "steps": 5}},
                            [(f"image{i}", data) for i, data in enumerate(images)])
            sock.send_multipart(frames, copy=False)
        deadline = time.monotonic() + answer_timeout_s
        while len(report.answers) < submits and time.monotonic() < deadline:
            if sock.poll(100):
                msg = decode(sock.recv_multipart(), CLIENT_LIMITS)
                answered = str(msg.fields.get("job_id"))
                if msg.type == "accepted" and answered in ids:
                    report.answers.setdefault(answered, "accepted")
                elif msg.type == "rejected" and answered in ids:
                    report.answers.setdefault(answered, msg.fields["code"])
        report.flood_s = time.monotonic() - started
        report.peak_kib = vm_kib(server.pid, "VmHWM")
        # The flooding client is still connected: it gets a pong too.
        sock.send_multipart(encode("ping", {"token": "flooder"}))
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if sock.poll(100):
                msg = decode(sock.recv_multipart(), CLIENT_LIMITS)
                if msg.type == "pong" and msg.fields.get("token") == "flooder":
                    report.answers["<ping>"] = "pong"
                    break
        for jid, answer in report.answers.items():  # leave nothing running behind
            if answer == "accepted":
                sock.send_multipart(encode("close", {"job_id": jid}))
    finally:
        pinger.stop.set()
        pinger.join(timeout=15)
        sock.close(0)
        context.term()
    report.ping_latencies, report.ping_lost = pinger.latencies, pinger.lost
    return report


def describe(report: FloodReport) -> str:
    accepted = sum(1 for a in report.answers.values() if a == "accepted")
    lat = sorted(report.ping_latencies) or [float("nan")]
    return (
        f"{len(report.answers) - ('<ping>' in report.answers)} answers ({accepted} accepted) in {report.flood_s:.1f} s; "
        f"submit {report.submit_bytes / MiB:.0f} MiB; server RSS {report.baseline_kib / 1024:.0f} MiB -> peak "
        f"{report.peak_kib / 1024:.0f} MiB (+{report.growth_mib:.0f} MiB); pings {len(lat)} "
        f"(median {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms, lost {report.ping_lost})"
    )


SIDE = 1448  # 1448^2 RGBA stored: ~8 MiB per image, within the shared 16 Mpx default limit
BUDGET = 64 * MiB


def test_flood_of_large_submits_keeps_server_memory_bounded_and_others_served(tmp_path: Path) -> None:
    image = big_png(SIDE)
    images = [image] * 3  # ~24 MiB per submit
    submits = 40  # ~960 MiB sent as fast as loopback carries it
    with ServerProcess(tmp_path / "results", "--queue-size", "8", "--limit", f"max_queue_bytes={BUDGET}") as server:
        wait_ready(server.address)
        report = flood(server, submits=submits, images=images)
    summary = describe(report)
    assert report.answers.pop("<ping>", None) == "pong", summary
    assert len(report.answers) == submits, summary
    accepted = sum(1 for a in report.answers.values() if a == "accepted")
    assert accepted >= 2, summary
    assert set(report.answers.values()) <= {"accepted", "busy"}, summary
    # The queue holds at most the budget; what is read but not yet refused (and what the allocator
    # keeps) adds some submits: measured +225-276 MiB here. Holding every submit, as the server did
    # when it decoded on its loop, grew it by about the whole flood (+1000 MiB).
    submit_mib = report.submit_bytes / MiB
    assert report.growth_mib < BUDGET / MiB + 0.4 * submits * submit_mib, summary
    assert report.ping_lost == 0, summary
    # Responsiveness without a clock bound: the other client's pings kept being answered while
    # the flood was being refused (latencies are printed in the summary, not asserted).
    assert len(report.ping_latencies) >= 3, summary


def test_queue_byte_budget_is_advertised_and_enforced(tmp_path: Path) -> None:
    image = big_png(160)  # ~100 KiB
    budget = int(2.5 * len(image))  # room for two such jobs waiting, not three
    with ServerProcess(tmp_path / "results", "--limit", f"max_queue_bytes={budget}") as server:
        wait_ready(server.address)
        with ServerConnection(server.address) as conn:
            conn.hello()
            assert collect(conn, lambda e: isinstance(e, Welcome))[-1].limits["max_queue_bytes"] == budget
            conn.submit("running", [image], scripted("slow", steps=100))
            collect(conn, lambda e: isinstance(e, Progress) and e.job_id == "running")
            for jid in ("q1", "q2", "q3"):
                conn.submit(jid, [image], JobSettings())
            events = collect(conn, lambda e: isinstance(e, Rejected))
            assert {e.job_id: e.queue_position for e in events_of(events, Accepted)} == {"q1": 1, "q2": 2}
            busy = events[-1]
            assert (busy.job_id, busy.code) == ("q3", "busy"), busy
            assert busy.retry_after_s is not None and busy.retry_after_s >= 1.0
            assert "MiB waiting" in busy.message
            conn.ping()
            assert collect(conn, lambda e: isinstance(e, Pong))[-1].status["queued_bytes"] == 2 * len(image)
            # More than the whole budget can never be queued: not "busy" (retrying cannot help) but too_large.
            conn.submit("huge", [image, image, image], JobSettings())
            huge = collect(conn, lambda e: isinstance(e, Rejected))[-1]
            assert (huge.job_id, huge.code) == ("huge", "too_large") and "max_queue_bytes" in huge.message
            # A cancelled queued job gives its bytes back.
            conn.cancel("q1")
            collect(conn, lambda e: isinstance(e, StateChanged) and e.job_id == "q1" and e.state == "cancelled")
            conn.submit("q3", [image], JobSettings())
            again = collect(conn, lambda e: isinstance(e, (Accepted, Rejected)) and e.job_id == "q3")[-1]
            assert isinstance(again, Accepted), again
            for jid in ("running", "q2", "q3"):
                conn.close_job(jid)


def test_images_are_decoded_by_the_worker_not_the_event_loop(tmp_path: Path) -> None:
    # Eight 16 Mpx JPEGs take the decoder a second or more; on the event loop that was a second
    # during which no client got an answer (and "accepted" came only after it).
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    buf = io.BytesIO()
    Image.fromarray(blocks).save(buf, format="JPEG", quality=90)
    images = [buf.getvalue()] * 8
    with ServerProcess(tmp_path / "results") as server:
        wait_ready(server.address)
        pinger = Pinger(server.address)
        pinger.start()
        try:
            with ServerConnection(server.address) as conn:
                accept_s = {}
                for jid in ("big-1", "big-2"):
                    sent = time.monotonic()
                    conn.submit(jid, images, JobSettings())
                    collect(conn, lambda e, jid=jid: isinstance(e, Accepted) and e.job_id == jid)
                    accept_s[jid] = time.monotonic() - sent
                for jid in ("big-1", "big-2"):
                    collect(conn, lambda e, jid=jid: isinstance(e, ResultReady) and e.job_id == jid, 60.0)
                    conn.fetch(jid)
                    result = collect(conn, lambda e: isinstance(e, Result))[-1]
                    assert result.provenance["image_shape"] == [4096, 4096, 4]  # the worker decoded them
        finally:
            pinger.stop.set()
            pinger.join(timeout=15)
    # Decoding on the loop took 3-4.5 s per submit on a shared 2-core machine, header checks ~0.1 s;
    # benchmarks measure that. Here: both were accepted, the other client was answered throughout.
    assert set(accept_s) == {"big-1", "big-2"}
    assert pinger.lost == 0 and pinger.latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submits", type=int, default=24)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--budget-mib", type=int, default=128)
    args = parser.parse_args()
    import tempfile

    extra = ["--queue-size", str(args.queue_size)]
    if args.budget_mib:
        extra += ["--limit", f"max_queue_bytes={args.budget_mib * MiB}"]
    image = big_png(args.side)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "results", *extra) as server:
        wait_ready(server.address)
        print(describe(flood(server, submits=args.submits, images=[image] * args.images)))


if __name__ == "__main__":
    main()
