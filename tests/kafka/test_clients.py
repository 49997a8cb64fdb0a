"""Real Kafka clients against a 3-node leaderhook cluster.

The original scenario end to end: topic `raft-test` (3 partitions,
replication 3) created with confluent-kafka's AdminClient, 10,000 keyed
messages per producer sent with acks=all from confluent-kafka (plain and with
enable.idempotence) and from kafka-python with its defaults (idempotent)
with zero delivery errors, then consumed back by assigned partitions (no
consumer group) with confluent-kafka and with kcat; content and
per-partition order compared, no message twice. A first negative control
runs the same cluster without plugins: the assignments never name a leader,
so producing fails (test_negative_control.py reproduces the original
NOT_LEADER_OR_FOLLOWER).
"""

import collections
import shutil
import subprocess
import time

import kafka
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import raft_leader, wait_until

TOPIC = "raft-test"
PARTITIONS = 3
MESSAGES = 10_000  # per producer


def create_topic(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3)],
        operation_timeout=20,
        request_timeout=30,
    )
    futures[TOPIC].result(timeout=40)
    return admin


def leaders(admin):
    topic = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
    return {p: m.leader for p, m in topic.partitions.items()}


def wait_for_leaders(admin, timeout=30):
    def assigned():
        found = leaders(admin)
        return found if len(found) == PARTITIONS and all(l > 0 for l in found.values()) else None

    return wait_until("a leader for every partition", assigned, timeout, interval=0.2)


def produce_confluent(bootstrap, prefix, idempotent=False, acks="all", messages=MESSAGES):
    """Returns [(partition, offset, key, value)] in send order, and errors.
    With acks=0 the broker answers nothing, so offsets are unknown (-1)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            # Fails the producer fatally if the broker cannot do it.
            "enable.idempotence": idempotent,
        }
    )
    acked, errors = {}, []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.key().decode()] = (msg.partition(), msg.offset())

    keys = []
    for i in range(messages):
        key, value = f"{prefix}-key-{i % 97}-{i}", f"{prefix}-value-{i}"
        keys.append((key, value))
        while True:
            try:
                producer.produce(TOPIC, key=key, value=value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(90) == 0, "confluent-kafka: messages still in flight"
    return [(*acked[k], k, v) for k, v in keys if k in acked], errors


def produce_kafka_python(bootstrap, prefix):
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        linger_ms=5,
        request_timeout_ms=30000,
    )
    # kafka-python 3 is idempotent by default, but silently falls back to a
    # plain producer if it judges the broker unable: make sure it did not.
    assert producer.config["enable_idempotence"], "kafka-python turned idempotence off"
    sent, errors = [], []
    futures = []
    for i in range(MESSAGES):
        key, value = f"{prefix}-key-{i % 97}-{i}", f"{prefix}-value-{i}"
        futures.append((key, value, producer.send(TOPIC, key=key.encode(), value=value.encode())))
    producer.flush(timeout=90)
    pid = producer._transaction_manager.producer_id_and_epoch.producer_id
    assert pid >= 0, "kafka-python produced without a producer id"
    for key, value, future in futures:
        try:
            meta = future.get(timeout=30)
            sent.append((meta.partition, meta.offset, key, value))
        except Exception as e:  # noqa: BLE001 - every failure counts
            errors.append(e)
    producer.close(timeout=10)
    return sent, errors


def consume_confluent(bootstrap, expected_per_partition, timeout=60):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got = collections.defaultdict(list)
    eof = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < PARTITIONS and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if len(got[msg.partition()]) >= expected_per_partition.get(msg.partition(), 0):
                        eof.add(msg.partition())
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            got[msg.partition()].append((msg.offset(), msg.key().decode(), msg.value().decode()))
    finally:
        consumer.close()
    return got


def consume_kcat(bootstrap, partition):
    out = subprocess.run(
        [
            "kcat", "-C", "-b", bootstrap, "-t", TOPIC, "-p", str(partition),
            "-o", "beginning", "-e", "-q", "-f", "%o\t%k\t%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = []
    for line in out.stdout.splitlines():
        offset, key, value = line.split("\t")
        rows.append((int(offset), key, value))
    return rows


def test_produce_and_consume_with_real_clients(cluster):
    admin = create_topic(cluster.bootstrap)
    wait_for_leaders(admin)

    confluent, errors = produce_confluent(cluster.bootstrap, "cf")
    assert errors == [], f"confluent-kafka delivery errors: {errors[:5]}"
    assert len(confluent) == MESSAGES
    idempotent, errors = produce_confluent(cluster.bootstrap, "ci", idempotent=True)
    assert errors == [], f"idempotent confluent-kafka delivery errors: {errors[:5]}"
    assert len(idempotent) == MESSAGES
    python, errors = produce_kafka_python(cluster.bootstrap, "kp")
    assert errors == [], f"kafka-python delivery errors: {errors[:5]}"
    assert len(python) == MESSAGES

    # What the partitions must hold: every acknowledged message at its
    # acknowledged offset, offsets dense from 0.
    expected = collections.defaultdict(dict)
    for partition, offset, key, value in confluent + idempotent + python:
        assert offset not in expected[partition], f"offset {partition}/{offset} acked twice"
        expected[partition][offset] = (key, value)
    for partition, rows in expected.items():
        assert sorted(rows) == list(range(len(rows))), f"partition {partition}: offsets not dense"
    # Each producer's messages keep their send order within a partition.
    for sent in (confluent, idempotent, python):
        for p in range(PARTITIONS):
            offsets = [o for part, o, _, _ in sent if part == p]
            assert offsets == sorted(offsets), f"partition {p}: acked out of send order"

    want = {p: [(o, *rows[o]) for o in sorted(rows)] for p, rows in expected.items()}
    counts = {p: len(rows) for p, rows in want.items()}
    assert sum(counts.values()) == 3 * MESSAGES

    got = consume_confluent(cluster.bootstrap, counts)
    for p in range(PARTITIONS):
        assert got[p] == want.get(p, []), f"confluent-kafka consumer, partition {p}"

    if shutil.which("kcat") is None:
        pytest.fail("kcat not installed (scripts/test.sh installs it)")
    for p in range(PARTITIONS):
        assert consume_kcat(cluster.bootstrap, p) == want.get(p, []), f"kcat, partition {p}"


def test_without_the_plugin_producing_fails(cluster_without_plugins):
    """The negative control: Raft elects a leader for every partition, but
    no plugin writes the assignments, so Metadata names no leader (-1,
    LEADER_NOT_AVAILABLE) and no produce succeeds."""
    cluster = cluster_without_plugins
    bootstrap = cluster.bootstrap
    admin = create_topic(bootstrap)
    # Replication works (Raft has a leader everywhere); only the assignment
    # is missing. Without this, a cluster that elected no one would pass.
    wait_until(
        "Raft to elect a leader for every partition",
        lambda: all(raft_leader(cluster, f"{TOPIC}-{p}") for p in range(PARTITIONS)),
        30,
        interval=0.2,
    )
    assert set(leaders(admin).values()) == {-1}
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 5000}
    )
    errors, acked = [], []
    for i in range(20):
        producer.produce(
            TOPIC,
            key=f"k{i}",
            value=f"v{i}",
            on_delivery=lambda err, msg: (errors if err else acked).append(err),
        )
    producer.flush(30)
    assert acked == []
    assert len(errors) == 20
    assert all(e.code() == KafkaError._MSG_TIMED_OUT for e in errors), errors[:3]


def test_acks_0_and_1_deliver_too(cluster):
    """acks=1 answers after the Raft commit like acks=all (there is no
    earlier point at which the leader alone has the batch); acks=0 gets no
    answer at all. Either way every message ends up stored, once."""
    admin = create_topic(cluster.bootstrap)
    wait_for_leaders(admin)
    one, errors = produce_confluent(cluster.bootstrap, "a1", acks="1", messages=2000)
    assert errors == [] and len(one) == 2000
    assert all(offset >= 0 for _, offset, _, _ in one)
    zero, errors = produce_confluent(cluster.bootstrap, "a0", acks="0", messages=2000)
    assert errors == [] and len(zero) == 2000

    sent = {(k, v) for _, _, k, v in one + zero}
    deadline = time.monotonic() + 30
    while True:  # acks=0 sends may still be applying
        ends = {p: 0 for p in range(PARTITIONS)}
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused"})
        try:
            for p in ends:
                ends[p] = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
        finally:
            consumer.close()
        if sum(ends.values()) >= len(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    got = consume_confluent(cluster.bootstrap, ends)
    stored = [(k, v) for rows in got.values() for _, k, v in rows]
    assert len(stored) == len(sent) and set(stored) == sent
