"""Produce throughput and latency from a real client (confluent-kafka) on a
3-node loopback cluster: 1 KiB messages, acks=all.

    python3 tests/kafka/bench_produce.py [--messages N] [--partitions P]
        [--rounds R] [--smoke]

Uses $LEADERHOOK_BIN, else target/release/leaderhook if built, else the
debug binary (the one used is printed: debug figures are much lower). Two
topics are measured in the same run: replication 3 (the figure) and
replication 1 (the baseline: the same broker, the same client, no
replication), so the ratio shows what replicating through Raft costs. Both
topics are created before anything is timed, and the runs alternate
(RF3, RF1, then RF1, RF3, ...), each round producing N/R messages to each,
so neither side always runs on the fuller cluster or the warmer machine.
Latency is per message, from produce() to its delivery report; percentiles
are nearest-rank. `--smoke` (CI) produces a few thousand messages in two
rounds: figures printed, not judged; a run that fails (a delivery error, no
leader) exits non-zero. The last line is machine-readable.
"""

import argparse
import math
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if "LEADERHOOK_BIN" not in os.environ and (ROOT / "target/release/leaderhook").exists():
    os.environ["LEADERHOOK_BIN"] = str(ROOT / "target/release/leaderhook")
sys.path.insert(0, str(pathlib.Path(__file__).parent))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import conftest  # noqa: E402

SIZE = 1024


def create(bootstrap, name, partitions, replication):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication)],
        operation_timeout=20,
    )[name].result(timeout=40)
    deadline = time.monotonic() + 30
    while True:
        parts = admin.list_topics(name, timeout=10).topics[name].partitions
        if len(parts) == partitions and all(p.leader > 0 for p in parts.values()):
            return
        assert time.monotonic() < deadline, f"{name}: no leaders"
        time.sleep(0.2)


def run(bootstrap, topic, messages, one_at_a_time=False):
    """Saturating (as fast as the client queues) or one message in flight."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 0 if one_at_a_time else 5,
            "batch.size": 1 << 20,
            "queue.buffering.max.messages": 1_000_000,
            "message.timeout.ms": 120000,
        }
    )
    payload = os.urandom(SIZE)
    latencies, errors = [], []
    sent_at = {}

    def report(err, msg):
        if err is not None:
            errors.append(err)
            return
        latencies.append(time.perf_counter() - sent_at[int(msg.key())])

    # Warm up connections and metadata outside the timed window.
    for i in range(200):
        producer.produce(topic, key=b"-1", value=payload)
    producer.flush(60)
    latencies.clear()

    start = time.perf_counter()
    for i in range(messages):
        sent_at[i] = time.perf_counter()
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=payload, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        if one_at_a_time:
            producer.flush(30)
        else:
            producer.poll(0)
    assert producer.flush(120) == 0, "messages still in flight"
    elapsed = time.perf_counter() - start
    assert not errors, f"delivery errors: {errors[:3]}"
    assert len(latencies) == messages
    return {"messages": messages, "elapsed": elapsed, "latencies": latencies}


def percentile(sorted_values, p):
    """Nearest-rank percentile: the smallest value with at least p% of the
    values at or below it (rank ceil(p/100 * n), 1-based)."""
    assert sorted_values, "no values"
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def summarise(runs):
    """Throughput over the summed timed windows of `runs`, latency
    percentiles (ms) over all their messages."""
    messages = sum(r["messages"] for r in runs)
    elapsed = sum(r["elapsed"] for r in runs)
    latencies = sorted(x for r in runs for x in r["latencies"])
    return {
        "msgs_per_s": messages / elapsed,
        "mb_per_s": messages * SIZE / elapsed / 1e6,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.rounds = 2_000, 2
    per_round = args.messages // args.rounds
    print(f"broker binary: {conftest.BIN}{' [smoke: figures not judged]' if args.smoke else ''}")
    cluster = conftest.Cluster()
    try:
        bootstrap = cluster.bootstrap
        for replication in (3, 1):
            create(bootstrap, f"bench-rf{replication}", args.partitions, replication)
        saturated = {3: [], 1: []}
        idle = {3: [], 1: []}
        for round_ in range(args.rounds):
            order = (3, 1) if round_ % 2 == 0 else (1, 3)
            for replication in order:
                topic = f"bench-rf{replication}"
                saturated[replication].append(run(bootstrap, topic, per_round))
                idle[replication].append(
                    run(bootstrap, topic, max(per_round // 20, 10), one_at_a_time=True)
                )
        figures = {}
        for replication in (3, 1):
            f = summarise(saturated[replication])
            one = summarise(idle[replication])
            f["p50_idle_ms"], f["p99_idle_ms"] = one["p50_ms"], one["p99_ms"]
            figures[replication] = f
            print(
                f"replication {replication}: {per_round * args.rounds} x {SIZE} B acks=all over "
                f"{args.partitions} partitions in {args.rounds} alternating rounds: "
                f"{f['msgs_per_s']:.0f} msg/s, "
                f"{f['mb_per_s']:.1f} MB/s, latency p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms "
                f"(saturated); one message in flight: p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms"
            )
        rf3, rf1 = figures[3], figures[1]
        print(
            f"produce msgs_per_s={rf3['msgs_per_s']:.0f} mb_per_s={rf3['mb_per_s']:.1f} "
            f"p50_ms={rf3['p50_ms']:.1f} p99_ms={rf3['p99_ms']:.1f} "
            f"p50_idle_ms={rf3['p50_idle_ms']:.2f} p99_idle_ms={rf3['p99_idle_ms']:.2f} "
            f"ratio_to_rf1={rf3['msgs_per_s'] / rf1['msgs_per_s']:.2f}"
        )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
