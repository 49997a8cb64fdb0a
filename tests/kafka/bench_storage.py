"""Storage at volume on a 3-node loopback cluster: produce N GiB of
incompressible 1 KiB records (RF3, 3 partitions, acks=all, confluent-kafka)
and report, per node, resident memory before and after, disk used, and the
time from a full restart (every node killed with SIGKILL and started again)
to the first acknowledged produce — at two sizes in the same run, each on a
fresh cluster, so restart time can be compared across sizes.

    python3 tests/kafka/bench_storage.py [--sizes-gib 0.5 2] [--smoke]

Targets (issue 10): RSS after 2 GiB under 300 MiB per node; restart to the
first acked produce at 2 GiB within 1.5x of the time at 0.5 GiB. `--smoke`
runs 16 and 64 MiB (CI: figures printed, not judged). A figure that fails
(a produce error, a node that never serves) exits non-zero. The last line is
machine-readable. KEEP=1 keeps the clusters' directories (logs, data) in
/tmp for a look afterwards.
"""

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if "LEADERHOOK_BIN" not in os.environ and (ROOT / "target/release/leaderhook").exists():
    os.environ["LEADERHOOK_BIN"] = str(ROOT / "target/release/leaderhook")
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from confluent_kafka import Producer  # noqa: E402

import conftest  # noqa: E402
from bench_produce import create  # noqa: E402

SIZE = 1024
TOPIC = "volume"


def rss_mib(pid, field="VmRSS"):
    """A memory figure of /proc/PID/status in MiB: VmRSS (resident), RssAnon
    (the heap and stacks: what the broker allocated), VmHWM (peak resident)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mib(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file()) / (1 << 20)


def produce(bootstrap, total_bytes):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": 300000,
    })
    errors = []
    count = total_bytes // SIZE
    # Incompressible: fresh random bytes, reused in rotation from a pool far
    # larger than any batch.
    pool = os.urandom(64 << 20)
    started = time.monotonic()
    for i in range(count):
        at = (i * SIZE) % (len(pool) - SIZE)
        while True:
            try:
                producer.produce(TOPIC, pool[at : at + SIZE], on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(600)
    took = time.monotonic() - started
    if left or errors:
        raise SystemExit(f"produce failed: {left} unsent, errors {errors[:3]}")
    return count, took


def first_ack(bootstrap, timeout=300):
    """Seconds until one acks=all message is acknowledged."""
    started = time.monotonic()
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": timeout * 1000,
    })
    errors = []
    producer.produce(TOPIC, b"after restart", on_delivery=lambda e, m: e and errors.append(e))
    if producer.flush(timeout) or errors:
        raise SystemExit(f"no produce acknowledged after the restart: {errors}")
    return time.monotonic() - started


def measure(gib):
    cluster = conftest.Cluster()
    try:
        create(cluster.bootstrap, TOPIC, 3, 3)
        rss_before = [rss_mib(cluster.pid(n)) for n in cluster.configs]
        count, took = produce(cluster.bootstrap, int(gib * (1 << 30)))
        rss_after = [rss_mib(cluster.pid(n)) for n in cluster.configs]
        anon_after = [rss_mib(cluster.pid(n), "RssAnon") for n in cluster.configs]
        peak = [rss_mib(cluster.pid(n), "VmHWM") for n in cluster.configs]
        disk = [disk_mib(cluster.dir / f"node{n}") for n in cluster.configs]
        for n in list(cluster.procs):
            cluster.kill(n)
        restart = time.monotonic()
        for n in cluster.configs:
            cluster.start(n)
        restart_to_ack = time.monotonic() - restart + first_ack(cluster.bootstrap)
        rss_restarted = [rss_mib(cluster.pid(n)) for n in cluster.configs]
        fig = {
            "gib": gib,
            "msgs_per_s": count / took,
            "mb_per_s": count * SIZE / took / 1e6,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "anon_after": anon_after,
            "peak": peak,
            "rss_restarted": rss_restarted,
            "disk": disk,
            "restart_s": restart_to_ack,
        }
        fmt = lambda xs: "/".join(f"{x:.0f}" for x in xs)
        print(
            f"{gib} GiB: {count} x {SIZE} B in {took:.1f} s ({fig['msgs_per_s']:.0f} msg/s, "
            f"{fig['mb_per_s']:.1f} MB/s); RSS MiB per node before {fmt(rss_before)}, after "
            f"{fmt(rss_after)} (anonymous {fmt(anon_after)}, peak {fmt(peak)}), after restart {fmt(rss_restarted)}; disk MiB {fmt(disk)}; "
            f"restart to first acked produce {restart_to_ack:.2f} s",
            flush=True,
        )
        return fig
    finally:
        cluster.stop()
        import shutil
        if not os.environ.get("KEEP"):
            shutil.rmtree(cluster.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gib", type=float, nargs=2, default=[0.5, 2.0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    sizes = [1 / 64, 1 / 16] if args.smoke else args.sizes_gib
    print(f"broker binary: {conftest.BIN}; load: {os.getloadavg()}")
    small, big = (measure(g) for g in sizes)
    ratio = big["restart_s"] / small["restart_s"]
    print(
        f"storage small_gib={small['gib']} big_gib={big['gib']} "
        f"rss_after_max_mib={max(big['rss_after']):.0f} rss_peak_max_mib={max(big['peak']):.0f} rss_restarted_max_mib={max(big['rss_restarted']):.0f} "
        f"restart_small_s={small['restart_s']:.2f} restart_big_s={big['restart_s']:.2f} "
        f"restart_ratio={ratio:.2f} mb_per_s_big={big['mb_per_s']:.1f} "
        f"targets: rss<300 restart_ratio<1.5"
    )


if __name__ == "__main__":
    main()
