"""Produce throughput and latency from a real client (confluent-kafka) on a
3-node loopback cluster: 1 KiB messages, acks=all.

    python3 tests/kafka/bench_produce.py [--messages N] [--partitions P]

Uses $LEADERHOOK_BIN, else target/release/leaderhook if built, else the
debug binary (the one used is printed: debug figures are much lower). Two
topics are measured one after the other in the same run: replication 3 (the
figure) and replication 1 (the baseline: the same broker, the same client,
no replication), so the ratio shows what replicating through Raft costs.
Latency is per message, from produce() to its delivery report. The last
line is machine-readable.
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
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000  # noqa: E731
    return {
        "msgs_per_s": messages / elapsed,
        "mb_per_s": messages * SIZE / elapsed / 1e6,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    print(f"broker binary: {conftest.BIN}")
    cluster = conftest.Cluster()
    try:
        bootstrap = cluster.bootstrap
        figures = {}
        for replication in (3, 1):
            topic = f"bench-rf{replication}"
            create(bootstrap, topic, args.partitions, replication)
            f = run(bootstrap, topic, args.messages)
            one = run(bootstrap, topic, args.messages // 20, one_at_a_time=True)
            f["p50_idle_ms"], f["p99_idle_ms"] = one["p50_ms"], one["p99_ms"]
            figures[replication] = f
            print(
                f"replication {replication}: {args.messages} x {SIZE} B acks=all over "
                f"{args.partitions} partitions: {f['msgs_per_s']:.0f} msg/s, "
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
