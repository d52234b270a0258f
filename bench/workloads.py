"""The five workloads of issue 4, each run against one server at a time.

A workload asks the server for its upload slots first (for Prosody, over
XMPP), then times only the HTTP transfers, so every server is measured on the
same thing: the bytes of its upload and download path. CPU and peak memory of
the server's processes are read around the transfers (:mod:`bench.usage`);
the client's own CPU is measured beside them.

Sizes come from a :class:`Scale`: :data:`FULL` is the issue's, :data:`QUICK`
shrinks every count and size so that a whole run takes seconds (CI's smoke
test); the pacing and the shape of each workload stay the same.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence

from attrs import frozen

from bench.load import (
    STOPPED,
    Batch,
    ClientProfile,
    Result,
    Slot,
    download,
    percentile,
    run_in_background,
    run_together,
    upload,
)
from bench.servers import FileSpec, Server
from bench.usage import UsageMeter

MiB = 1024**2
GiB = 1024**3
MB = 1000**2

#: What every client of workloads 1 to 4 calls itself: no class's name, so the
#: adaptive engine classifies these clients from their connection alone.
NEUTRAL = ClientProfile()

#: User-Agents of real clients, as the client_classification plugin sees them.
CONVERSATIONS = "Conversations/2.17.2 (Android 14)"
DINO = "Dino/0.4.4 libsoup/3.4.4"
CURL = "curl/8.5.0"


@frozen
class Scale:
    """Counts and sizes of every workload."""

    large_size: int
    photo_count: int
    photo_sizes: tuple[int, int]
    photo_concurrency: int
    memory_uploads: int
    memory_size: int
    memory_deadline: float
    slow_clients: int
    slow_seconds: float
    slow_stall: tuple[float, float]
    fast_clients: int
    fast_files: int
    fast_size: int
    fast_deadline: float
    fastlink_size: int
    desktop_files: int
    desktop_size: int
    phone_files: int
    phone_size: int
    cellular_files: int
    cellular_size: int
    cellular_stall: tuple[float, float]


FULL = Scale(
    large_size=1 * GiB,
    photo_count=2000,
    photo_sizes=(100_000, 500_000),
    photo_concurrency=32,
    memory_uploads=100,
    memory_size=100 * MB,
    memory_deadline=150.0,
    slow_clients=200,
    slow_seconds=10.0,
    slow_stall=(0.5, 2.5),
    fast_clients=4,
    fast_files=2,
    fast_size=64 * MiB,
    fast_deadline=60.0,
    fastlink_size=256 * MiB,
    desktop_files=8,
    desktop_size=20 * MB,
    phone_files=16,
    phone_size=3 * MB,
    cellular_files=20,
    cellular_size=400_000,
    cellular_stall=(0.5, 2.0),
)

QUICK = Scale(
    large_size=16 * MiB,
    photo_count=64,
    photo_sizes=(100_000, 500_000),
    photo_concurrency=32,
    memory_uploads=8,
    memory_size=4 * MB,
    memory_deadline=60.0,
    slow_clients=16,
    slow_seconds=1.0,
    slow_stall=(0.1, 0.3),
    fast_clients=2,
    fast_files=2,
    fast_size=4 * MiB,
    fast_deadline=30.0,
    fastlink_size=16 * MiB,
    desktop_files=2,
    desktop_size=2 * MB,
    phone_files=4,
    phone_size=500_000,
    cellular_files=4,
    cellular_size=40_000,
    cellular_stall=(0.1, 0.2),
)


@frozen
class Metric:
    """One number a workload reports per server and round.

    :ivar key: its name in the results.
    :ivar label: its column heading, unit included.
    :ivar higher_is_better: which way is better, for ratios.
    :ivar headline: compared across servers (ratios to peers, adaptive
        against baseline); the others are context.
    :ivar digits: decimals shown.
    """

    key: str
    label: str
    higher_is_better: bool = True
    headline: bool = False
    digits: int = 1


Measurement = dict[str, float]


class Workload:
    """One workload: its metrics, how often it runs, and how."""

    key = ""
    title = ""
    #: Rounds in a full run; heavy workloads run fewer (`--rounds` overrides).
    rounds = 3
    #: The peer ratios are taken against, for the headline metrics.
    reference: tuple[str, ...] = ("nginx", "prosody")
    #: Which servers run it; None for all.
    only: tuple[str, ...] | None = None
    metrics: tuple[Metric, ...] = ()

    def __init__(self, scale: Scale) -> None:
        self.scale = scale

    def describe(self) -> str:
        raise NotImplementedError

    def run(self, server: Server, round_index: int) -> Measurement:
        raise NotImplementedError


def _need(batch: Batch, what: str) -> None:
    """Refuse a measurement of transfers that did not all succeed."""
    if batch.failures:
        failed = [r for r in batch.results if not r.ok]
        raise TransferFailed(
            f"{what}: {batch.failures} of {len(batch.results)} failed; "
            f"first: {failed[0].error[:300]}"
        )


class TransferFailed(Exception):
    """A workload whose transfers failed measures nothing worth reporting."""


def _uploads(
    slots: Sequence[Slot], profile: ClientProfile
) -> list[Callable[[], Result]]:
    return [functools.partial(upload, slot, profile) for slot in slots]


def _downloads(
    slots: Sequence[Slot], profile: ClientProfile
) -> list[Callable[[], Result]]:
    return [functools.partial(download, slot, profile) for slot in slots]


def _mib_per_second(batch: Batch) -> float:
    return batch.bytes / MiB / batch.wall if batch.wall > 0 else 0.0


def _until(
    slots: Sequence[Slot], profile: ClientProfile, seconds: float, concurrency: int
) -> tuple[Batch, int]:
    """Upload to ``slots``, giving up on what is not done after ``seconds``.

    :returns: the batch, and how many uploads were stopped at the deadline;
        transfers that failed otherwise raise :class:`TransferFailed`.
    """
    deadline = time.perf_counter() + seconds
    jobs = [functools.partial(upload, slot, profile, deadline) for slot in slots]
    batch = run_together(jobs, concurrency, stagger=0.005)
    stopped = sum(result.error == STOPPED for result in batch.results)
    if batch.failures > stopped:
        _need(batch, f"{len(slots)} PUTs")
    return batch, stopped


def _sent_per_second(batch: Batch) -> float:
    """MiB/s of the body bytes sent, counting uploads stopped at a deadline."""
    sent = sum(result.transferred for result in batch.results)
    return sent / MiB / batch.wall if batch.wall > 0 else 0.0


def _per_gib(seconds: float, size: int) -> float:
    return seconds / (size / GiB) if size else 0.0


class LargeFile(Workload):
    key = "large"
    title = "1. One large PUT, then one large GET"
    reference = ("nginx",)
    metrics = (
        Metric("put_mib_s", "PUT MiB/s", headline=True),
        Metric("get_mib_s", "GET MiB/s", headline=True),
        Metric("put_cpu_per_gib", "PUT server CPU s/GiB", False, digits=2),
        Metric("get_cpu_per_gib", "GET server CPU s/GiB", False, digits=2),
        Metric("peak_rss_mib", "server peak RSS MiB", False),
        Metric("client_cpu_pct", "client CPU % of a core", False, digits=0),
    )

    def describe(self) -> str:
        size = self.scale.large_size
        return f"one PUT of {size // MiB} MiB, then a GET of the same file"

    def run(self, server: Server, round_index: int) -> Measurement:
        size = self.scale.large_size
        (slot,) = server.slots([FileSpec(f"large/r{round_index}/large.bin", size)])

        with UsageMeter(server.pids()) as put_usage:
            put = run_together(_uploads([slot], NEUTRAL), 1)
        _need(put, "PUT")
        with UsageMeter(server.pids()) as get_usage:
            get = run_together(_downloads([slot], NEUTRAL), 1)
        _need(get, "GET")

        assert put_usage.usage and get_usage.usage
        return {
            "put_mib_s": _mib_per_second(put),
            "get_mib_s": _mib_per_second(get),
            "put_cpu_per_gib": _per_gib(put_usage.usage.cpu_seconds, size),
            "get_cpu_per_gib": _per_gib(get_usage.usage.cpu_seconds, size),
            "peak_rss_mib": max(put_usage.usage.peak_rss, get_usage.usage.peak_rss)
            / MiB,
            "client_cpu_pct": 100 * max(put.client_cpu_share, get.client_cpu_share),
        }


class Photos(Workload):
    key = "photos"
    title = "2. Photos: many small PUTs at once"
    reference = ("prosody", "nginx")
    metrics = (
        Metric("uploads_per_s", "uploads/s", headline=True),
        Metric("p50_ms", "p50 latency ms", False),
        Metric("p99_ms", "p99 latency ms", False),
        Metric("cpu_ms_per_upload", "server CPU ms/upload", False, digits=2),
        Metric("client_cpu_pct", "client CPU % of a core", False, digits=0),
    )

    def describe(self) -> str:
        low, high = self.scale.photo_sizes
        return (
            f"{self.scale.photo_count} PUTs of {low // 1000}-{high // 1000} KB "
            f"(uniform, same sizes for every server in a round), "
            f"{self.scale.photo_concurrency} at a time, one connection each"
        )

    def run(self, server: Server, round_index: int) -> Measurement:
        sizes = random.Random(2000 + round_index)
        low, high = self.scale.photo_sizes
        files = [
            FileSpec(
                f"photos/r{round_index}/{index:05d}.jpg",
                sizes.randint(low, high),
                "image/jpeg",
            )
            for index in range(self.scale.photo_count)
        ]
        slots = server.slots(files)

        with UsageMeter(server.pids()) as usage:
            batch = run_together(_uploads(slots, NEUTRAL), self.scale.photo_concurrency)
        _need(batch, "photo PUTs")

        assert usage.usage
        latencies = [r.seconds * 1000 for r in batch.results]
        return {
            "uploads_per_s": len(batch.results) / batch.wall,
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "cpu_ms_per_upload": 1000 * usage.usage.cpu_seconds / len(files),
            "client_cpu_pct": 100 * batch.client_cpu_share,
        }


class Memory(Workload):
    key = "memory"
    title = "3. Memory: many large uploads at once"
    rounds = 1
    reference = ("nginx", "prosody")
    metrics = (
        Metric("peak_rss_mib", "server peak RSS MiB", False, headline=True),
        Metric("mib_s", "aggregate MiB/s", headline=True),
        Metric("done_pct", "uploads done in time %", digits=0),
        Metric("cpu_per_gib", "server CPU s/GiB", False, digits=2),
        Metric("client_cpu_pct", "client CPU % of a core", False, digits=0),
    )

    def describe(self) -> str:
        count, size = self.scale.memory_uploads, self.scale.memory_size
        return (
            f"{count} PUTs of {size // MB} MB, all at once. A server that has not "
            f"taken them all after {self.scale.memory_deadline:g} s is cut off there "
            "(its 'done' column says so): by then all of them have been in flight "
            "together, which is what the peak RSS is about, and the throughput is "
            "of the bytes sent until then"
        )

    def run(self, server: Server, round_index: int) -> Measurement:
        count, size = self.scale.memory_uploads, self.scale.memory_size
        files = [
            FileSpec(f"memory/r{round_index}/{index:03d}.bin", size)
            for index in range(count)
        ]
        slots = server.slots(files)

        with UsageMeter(server.pids()) as usage:
            batch, stopped = _until(slots, NEUTRAL, self.scale.memory_deadline, count)

        assert usage.usage
        sent = sum(r.transferred for r in batch.results)
        return {
            "peak_rss_mib": usage.usage.peak_rss / MiB,
            "mib_s": _sent_per_second(batch),
            "done_pct": 100 * (count - stopped) / count,
            "cpu_per_gib": _per_gib(usage.usage.cpu_seconds, sent),
            "client_cpu_pct": 100 * batch.client_cpu_share,
        }


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


class SlowClients(Workload):
    key = "slow"
    title = "4. Slow and mobile clients among fast ones"
    rounds = 2
    reference = ("nginx", "prosody")
    metrics = (
        Metric("fast_alone_mib_s", "fast alone MiB/s"),
        Metric("fast_mixed_mib_s", "fast among slow MiB/s", headline=True),
        Metric("fast_kept", "fast kept (mixed/alone)", digits=2),
        Metric("fast_done_pct", "fast uploads done in time %", digits=0),
        Metric("slow_ok_pct", "slow uploads done %", digits=0),
        Metric("peak_rss_mib", "server peak RSS MiB", False, headline=True),
        Metric("client_cpu_pct", "client CPU % of a core", False, digits=0),
    )

    def describe(self) -> str:
        s = self.scale
        return (
            f"{s.slow_clients} clients paced at 50 KB/s-2 MB/s (log-uniform), each "
            f"sending about {s.slow_seconds:g} s of data with one or two stalls of "
            f"{s.slow_stall[0]:g}-{s.slow_stall[1]:g} s and a 16-64 KiB SO_SNDBUF; "
            f"meanwhile {s.fast_clients} unpaced clients send {s.fast_files} files of "
            f"{s.fast_size // MiB} MiB each. 'Fast alone' is the same fast load "
            "just before, without the slow clients. Fast uploads not done after "
            f"{s.fast_deadline:g} s are cut off there and counted by the bytes sent"
        )

    def _slow_profiles(self, rng: random.Random) -> list[tuple[ClientProfile, int]]:
        s = self.scale
        profiles = []
        for _ in range(s.slow_clients):
            rate = _log_uniform(rng, 50_000, 2_000_000)
            stalls = tuple(
                (rng.uniform(0.1, 0.9), rng.uniform(*s.slow_stall))
                for _ in range(rng.randint(1, 2))
            )
            profile = ClientProfile(
                user_agent=NEUTRAL.user_agent,
                rate=rate,
                stalls=stalls,
                sndbuf=rng.choice((16384, 32768, 65536)),
            )
            profiles.append((profile, max(1, int(rate * s.slow_seconds))))
        return profiles

    def run(self, server: Server, round_index: int) -> Measurement:
        s = self.scale
        rng = random.Random(4000 + round_index)
        slow = self._slow_profiles(rng)
        prefix = f"slow/r{round_index}"
        fast_files = s.fast_clients * s.fast_files
        files = [
            *(
                FileSpec(f"{prefix}/slow-{i:03d}.bin", size)
                for i, (_, size) in enumerate(slow)
            ),
            *(
                FileSpec(f"{prefix}/alone-{i:03d}.bin", s.fast_size)
                for i in range(fast_files)
            ),
            *(
                FileSpec(f"{prefix}/mixed-{i:03d}.bin", s.fast_size)
                for i in range(fast_files)
            ),
        ]
        slots = server.slots(files)
        slow_slots = slots[: len(slow)]
        alone_slots = slots[len(slow) : len(slow) + fast_files]
        mixed_slots = slots[len(slow) + fast_files :]

        alone, _ = _until(alone_slots, NEUTRAL, s.fast_deadline, s.fast_clients)

        slow_jobs = [
            functools.partial(upload, slot, profile)
            for slot, (profile, _) in zip(slow_slots, slow, strict=True)
        ]
        with UsageMeter(server.pids()) as usage:
            # Every slow client is connected and sending before the fast ones
            # start: 200 arrivals over a second.
            stagger = 1.0 / len(slow_jobs)
            wait_for_slow = run_in_background(slow_jobs, len(slow_jobs), stagger)
            time.sleep(1.0 + stagger)
            mixed, stopped = _until(
                mixed_slots, NEUTRAL, s.fast_deadline, s.fast_clients
            )
            slow_batch = wait_for_slow()

        assert usage.usage
        alone_rate, mixed_rate = _sent_per_second(alone), _sent_per_second(mixed)
        done = len(slow_batch.results) - slow_batch.failures
        return {
            "fast_alone_mib_s": alone_rate,
            "fast_mixed_mib_s": mixed_rate,
            "fast_kept": mixed_rate / alone_rate if alone_rate else 0.0,
            "fast_done_pct": 100 * (len(mixed_slots) - stopped) / len(mixed_slots),
            "slow_ok_pct": 100 * done / len(slow_batch.results),
            "peak_rss_mib": usage.usage.peak_rss / MiB,
            "client_cpu_pct": 100 * slow_batch.client_cpu_share,
        }


class ClientClasses(Workload):
    key = "classes"
    title = "5. Adaptive against baseline, by client class"
    only = ("hmacfs-baseline", "hmacfs-adaptive")
    reference = ("hmacfs-baseline",)
    metrics = (
        Metric("fastlink_put_mib_s", "fast link PUT MiB/s", headline=True),
        Metric("fastlink_get_mib_s", "fast link GET MiB/s", headline=True),
        Metric("fastlink_cpu_per_gib", "fast link CPU s/GiB", False, True, 2),
        Metric("desktop_p50_s", "desktop PUT p50 s", False, True, 2),
        Metric("desktop_cpu_per_gib", "desktop CPU s/GiB", False, True, 2),
        Metric("phone_put_p50_s", "phone PUT p50 s", False, True, 2),
        Metric("phone_get_p50_s", "phone GET p50 s", False, True, 2),
        Metric("phone_cpu_per_gib", "phone CPU s/GiB", False, True, 2),
        Metric("cellular_p50_s", "cellular PUT p50 s", False, True, 2),
        Metric("peak_rss_mib", "server peak RSS MiB", False),
    )

    def describe(self) -> str:
        s = self.scale
        return (
            f"fast link: `{CURL}`, `X-Network-Type: ethernet`, one "
            f"{s.fastlink_size // MiB} MiB PUT and GET, unpaced, default buffers. "
            f"Desktop on Wi-Fi: `{DINO}`, `X-Network-Type: wifi`, "
            f"{s.desktop_files} PUTs of {s.desktop_size // MB} MB, 4 at a time, "
            "each paced at 6 MB/s. "
            f"Phone on LTE: `{CONVERSATIONS}`, `X-Network-Type: lte`, "
            f"{s.phone_files} PUTs of {s.phone_size / MB:g} MB at once, paced at "
            "1.5 MB/s, then their GETs at 3 MB/s, 64 KiB SO_SNDBUF/SO_RCVBUF. "
            f"Phone on a weak cellular link: the same app, "
            f"`X-Network-Type: cellular`, {s.cellular_files} PUTs of "
            f"{s.cellular_size // 1000} KB at once, paced at 100 KB/s with a stall of "
            f"{s.cellular_stall[0]:g}-{s.cellular_stall[1]:g} s, 8 KiB SO_SNDBUF"
        )

    def run(self, server: Server, round_index: int) -> Measurement:
        s = self.scale
        rng = random.Random(5000 + round_index)
        prefix = f"classes/r{round_index}"
        fastlink = ClientProfile(CURL, (("X-Network-Type", "ethernet"),))
        desktop = ClientProfile(DINO, (("X-Network-Type", "wifi"),), rate=6 * MB)
        phone_up = ClientProfile(
            CONVERSATIONS,
            (("X-Network-Type", "lte"),),
            rate=1.5 * MB,
            sndbuf=65536,
            rcvbuf=65536,
        )
        phone_down = ClientProfile(
            CONVERSATIONS,
            (("X-Network-Type", "lte"),),
            rate=3 * MB,
            sndbuf=65536,
            rcvbuf=65536,
        )
        cellular = [
            ClientProfile(
                CONVERSATIONS,
                (("X-Network-Type", "cellular"),),
                rate=100_000,
                stalls=((rng.uniform(0.2, 0.8), rng.uniform(*s.cellular_stall)),),
                sndbuf=8192,
            )
            for _ in range(s.cellular_files)
        ]
        peaks: list[int] = []

        (big,) = server.slots([FileSpec(f"{prefix}/fastlink.bin", s.fastlink_size)])
        with UsageMeter(server.pids()) as usage:
            put = run_together(_uploads([big], fastlink), 1)
            _need(put, "fast link PUT")
            get = run_together(_downloads([big], fastlink), 1)
            _need(get, "fast link GET")
        assert usage.usage
        fastlink_cpu = _per_gib(usage.usage.cpu_seconds, 2 * s.fastlink_size)
        peaks.append(usage.usage.peak_rss)
        server.clear_files()

        files = [
            FileSpec(f"{prefix}/desktop-{i}.bin", s.desktop_size)
            for i in range(s.desktop_files)
        ]
        with UsageMeter(server.pids()) as usage:
            desk = run_together(_uploads(server.slots(files), desktop), 4)
        _need(desk, "desktop PUTs")
        assert usage.usage
        desktop_cpu = _per_gib(usage.usage.cpu_seconds, desk.bytes)
        peaks.append(usage.usage.peak_rss)
        server.clear_files()

        files = [
            FileSpec(f"{prefix}/phone-{i}.jpg", s.phone_size, "image/jpeg")
            for i in range(s.phone_files)
        ]
        slots = server.slots(files)
        with UsageMeter(server.pids()) as usage:
            phone_put = run_together(_uploads(slots, phone_up), len(slots))
            _need(phone_put, "phone PUTs")
            phone_get = run_together(_downloads(slots, phone_down), len(slots))
            _need(phone_get, "phone GETs")
        assert usage.usage
        phone_cpu = _per_gib(usage.usage.cpu_seconds, phone_put.bytes + phone_get.bytes)
        peaks.append(usage.usage.peak_rss)
        server.clear_files()

        files = [
            FileSpec(f"{prefix}/cell-{i}.jpg", s.cellular_size, "image/jpeg")
            for i in range(s.cellular_files)
        ]
        slots = server.slots(files)
        jobs = [
            functools.partial(upload, slot, profile)
            for slot, profile in zip(slots, cellular, strict=True)
        ]
        with UsageMeter(server.pids()) as usage:
            cell = run_together(jobs, len(jobs))
        _need(cell, "cellular PUTs")
        assert usage.usage
        peaks.append(usage.usage.peak_rss)

        return {
            "fastlink_put_mib_s": _mib_per_second(put),
            "fastlink_get_mib_s": _mib_per_second(get),
            "fastlink_cpu_per_gib": fastlink_cpu,
            "desktop_p50_s": statistics.median(r.seconds for r in desk.results),
            "desktop_cpu_per_gib": desktop_cpu,
            "phone_put_p50_s": statistics.median(r.seconds for r in phone_put.results),
            "phone_get_p50_s": statistics.median(r.seconds for r in phone_get.results),
            "phone_cpu_per_gib": phone_cpu,
            "cellular_p50_s": statistics.median(r.seconds for r in cell.results),
            "peak_rss_mib": max(peaks) / MiB,
        }


WORKLOADS: tuple[type[Workload], ...] = (
    LargeFile,
    Photos,
    Memory,
    SlowClients,
    ClientClasses,
)
