"""A large tus upload cut again and again across source addresses (issue 6).

A phone moving between networks loses its connection and its address; with
tus it asks for the offset from the new address and sends only the rest. This
script measures what that costs: it uploads one file (500 MB by default) to a
real ``hmacfs serve``, cuts the PATCH at random points (a reset, as when the
radio link goes), resumes each time from the next address of 127.0.0.1..3,
and prints the bytes sent against the minimum, the file's size::

    python -m bench.tus_handoff                 # 500 MB, ten cuts
    python -m bench.tus_handoff --size 50MB --cuts 4 --json

Bytes re-sent have two causes: bytes still in the sockets' buffers when the
connection is reset never reach hmacfs (the network's loss, not the server's),
and bytes hmacfs received but did not keep. The second is zero with the
default cut policy, and the first is what a client sends twice. The issue's
bound is one checkpoint interval (``[tus] checkpoint_interval``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from hmacfs_core.units import format_size, parse_size

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from serverproc import RunningServer, start_server, stop_quietly  # noqa: E402
from tuswire import TusWire  # noqa: E402

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
BLOCK = 4 * 1024 * 1024
#: The client's socket send buffer (``SO_SNDBUF``, which Linux doubles): what
#: a phone still has queued when its link goes is lost with the reset.
SEND_BUFFER = 128 * 1024


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as stream:
        left = size
        while left:
            block = os.urandom(min(BLOCK, left))
            digest.update(block)
            stream.write(block)
            left -= len(block)
    return digest.hexdigest()


def stored_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_with_cuts(
    server: RunningServer,
    source: Path,
    target: str,
    cuts: int,
    chooser: random.Random,
    send_buffer: int | None,
) -> dict[str, object]:
    """Create the upload, cut it ``cuts`` times, finish it; return the figures."""
    wire = TusWire(server.host, server.port)
    size = source.stat().st_size
    created = wire.create(server.signed(target, size), size)
    assert created.status == 201, created
    location = created.headers["location"]
    cut_points = sorted(chooser.sample(range(1, size), cuts))

    sent = 0
    attempts = []
    with source.open("rb") as stream:
        for index, point in enumerate(cut_points):
            address = ADDRESSES[index % len(ADDRESSES)]
            offset = wire.offset(location, source=address)
            stream.seek(offset)
            handed = wire.patch_cut(
                location,
                offset,
                stream,
                size - offset,
                cut_after=max(0, point - offset),
                source=address,
                send_buffer=send_buffer,
            )
            sent += handed
            attempts.append({"address": address, "offset": offset, "sent": handed})

        address = ADDRESSES[cuts % len(ADDRESSES)]
        for _ in range(100):
            offset = wire.offset(location, source=address)
            stream.seek(offset)
            answer = wire.patch_stream(
                location, offset, stream, size - offset, source=address
            )
            sent += size - offset
            attempts.append(
                {"address": address, "offset": offset, "sent": size - offset}
            )
            if answer.status == 204:
                break
            # The last cut may still be settling (423) or just moved the
            # offset (409): ask again, as a tus client does.
            time.sleep(0.05)

    kept = [
        later["offset"] - earlier["offset"]
        for earlier, later in zip(attempts, attempts[1:], strict=False)
    ]
    lost = [
        attempt["sent"] - kept_bytes
        for attempt, kept_bytes in zip(attempts, kept, strict=False)
    ]
    return {
        "size": size,
        "cuts": cuts,
        "addresses": sorted({attempt["address"] for attempt in attempts}),
        "sent_bytes": sent,
        "resent_bytes": sent - size,
        "largest_loss_per_cut": max(lost, default=0),
        "attempts": attempts,
    }


def received_by_server(server: RunningServer) -> int:
    """Body bytes hmacfs read from all PATCHes, from its JSON log events."""
    return sum(
        int(event["bytes"])
        for event in server.events()
        if event.get("method") == "PATCH"
    )


def run(
    size: int,
    cuts: int,
    checkpoint: int,
    seed: int,
    work_dir: Path,
    send_buffer: int | None = SEND_BUFFER,
) -> dict:
    chooser = random.Random(seed)
    source = work_dir / "source.bin"
    expected = make_file(source, size)
    server = start_server(
        work_dir / "server",
        f"max_upload_size = {size}\n"
        '[logging]\nformat = "json"\n'
        f"[tus]\ncheckpoint_interval = {checkpoint}\n",
    )
    try:
        target = f"{os.urandom(6).hex()}/handoff.bin"
        started = time.monotonic()
        figures = upload_with_cuts(server, source, target, cuts, chooser, send_buffer)
        figures["seconds"] = round(time.monotonic() - started, 2)
        stored = server.storage / "files" / target
        figures["hash_matches"] = stored_sha256(stored) == expected
        received = received_by_server(server)
        figures["received_bytes"] = received
        figures["received_not_kept"] = received - size
    finally:
        stop_quietly(server)
        source.unlink(missing_ok=True)
    figures["checkpoint_interval"] = checkpoint
    figures["send_buffer"] = send_buffer
    figures["seed"] = seed
    return figures


def report(figures: dict) -> str:
    size = figures["size"]
    lines = [
        f"{format_size(size)} in {figures['cuts']} cuts across "
        f"{', '.join(figures['addresses'])} ({figures['seconds']} s, "
        f"seed {figures['seed']}, client SO_SNDBUF "
        f"{figures['send_buffer'] or 'auto-tuned'})",
        f"  minimum to send     {size:>14,} bytes",
        f"  sent by the client  {figures['sent_bytes']:>14,} bytes",
        f"  re-sent             {figures['resent_bytes']:>14,} bytes "
        f"(checkpoint interval {figures['checkpoint_interval']:,})",
        f"  largest loss in one cut {figures['largest_loss_per_cut']:>10,} bytes",
        f"  received by hmacfs  {figures['received_bytes']:>14,} bytes "
        f"({figures['received_not_kept']:,} received but not kept)",
        f"  stored SHA-256 {'matches' if figures['hash_matches'] else 'DIFFERS'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="500MB", help="file size (500MB)")
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--checkpoint", default="4MiB", help="[tus] checkpoint")
    parser.add_argument(
        "--send-buffer",
        default=str(SEND_BUFFER),
        help="the client's SO_SNDBUF, 0 for the kernel's auto-tuning (128KiB)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="end with a JSON line")
    options = parser.parse_args(argv)

    seed = options.seed if options.seed is not None else random.randrange(1 << 32)
    size = parse_size(options.size)
    checkpoint = parse_size(options.checkpoint)
    send_buffer = parse_size(options.send_buffer) or None
    with tempfile.TemporaryDirectory(prefix="tus-handoff-") as scratch:
        work = options.work_dir or Path(scratch)
        figures = run(size, options.cuts, checkpoint, seed, work, send_buffer)

    print(report(figures))
    if options.json:
        print(json.dumps(figures))
    return 0 if figures["hash_matches"] else 1


if __name__ == "__main__":
    sys.exit(main())
