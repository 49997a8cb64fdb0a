"""Failover under load: kill -9 the node leading partition 0 while a
confluent-kafka producer (acks=all) is sending. The producer carries on
after its metadata refresh, and afterwards every acknowledged message is
consumed back from the survivors — none lost. Then the killed node
restarts from its data directory, catches up, leads partition 0 again and
serves exactly what the survivors stored.

A plain producer may leave duplicates: a batch that was committed but
whose answer was lost with the killed node is sent again, and appended
again. An idempotent producer (enable.idempotence) resends it with the
same producer id and sequence, which the partition recognises: every
acknowledged message is stored exactly once, in send order.
"""

import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import BIN
from test_clients import PARTITIONS, TOPIC, create_topic, leaders, wait_for_leaders

MESSAGES = 3000


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_kill_the_leader_mid_produce(cluster, idempotent):
    admin = create_topic(cluster.bootstrap)
    victim = wait_for_leaders(admin)[0]
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "retry.backoff.ms": 200,
            "enable.idempotence": idempotent,
        }
    )
    acked, errors = [], []
    half = threading.Event()

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.key().decode(), msg.value().decode()))
            if len(acked) >= MESSAGES // 3:
                half.set()

    killed = False
    for i in range(MESSAGES):
        producer.produce(TOPIC, key=f"k{i}", value=f"v{i}", on_delivery=report)
        producer.poll(0)
        time.sleep(0.002)
        if not killed and half.is_set():
            cluster.kill(victim)
            killed = True
    assert producer.flush(90) == 0
    assert killed, "the leader was not killed mid-produce"
    assert errors == [], f"delivery errors: {errors[:5]}"
    assert len(acked) == MESSAGES

    # The survivors elected a new leader for partition 0 and the
    # assignment follows it.
    bootstrap = ",".join(cluster.kafka_addr(n) for n in cluster.procs)
    new = leaders(admin)[0]
    assert new not in (-1, victim), f"partition 0 still assigned to {new}"

    got = consume_all(bootstrap)
    stored = {(p, k, v) for p, rows in got.items() for _, k, v in rows}
    missing = [m for m in acked if m not in stored]
    assert missing == [], f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    duplicates = sum(len(rows) for rows in got.values()) - len(stored)
    print(f"failover: {len(acked)} acked, {duplicates} duplicates from client retries")
    if idempotent:
        assert duplicates == 0, f"{duplicates} messages stored twice by an idempotent producer"
        for p in range(PARTITIONS):
            sent = [k for part, k, _ in acked if part == p]
            assert [k for _, k, _ in got[p]] == sent, f"partition {p}: not in send order"

    # The killed node restarts from its data directory, catches up, and
    # takes partition 0 back: it serves exactly what the survivors stored.
    cluster.start(victim)
    cluster.wait_port(cluster.kafka_addr(victim))
    deadline = time.monotonic() + 60
    while leaders(admin)[0] != victim:
        assert time.monotonic() < deadline, "the restarted node never led partition 0 again"
        subprocess.run(
            [BIN, "partitions", "transfer", f"{TOPIC}-0", "--to", str(victim),
             "--dir", str(cluster.dir)],
            capture_output=True, timeout=60,
        )
        time.sleep(1)
    assert consume_all(cluster.bootstrap) == got, "the restarted node lost or changed records"


def consume_all(bootstrap):
    """Every partition from offset 0 up to its high watermark:
    {partition: [(offset, key, value)]}."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused-assign-only", "enable.auto.commit": False}
    )
    try:
        got = {p: [] for p in range(PARTITIONS)}
        ends = {}
        deadline = time.monotonic() + 30
        for p in range(PARTITIONS):
            while True:
                try:
                    ends[p] = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=20)[1]
                    break
                except KafkaException as e:
                    # A leader just elected answers NOT_LEADER_OR_FOLLOWER
                    # until its first entry commits: retriable, as for clients.
                    transient = e.args[0].code() in (
                        KafkaError.NOT_LEADER_FOR_PARTITION,
                        KafkaError.LEADER_NOT_AVAILABLE,
                    )
                    if not transient or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 60
        done = lambda: all(  # noqa: E731
            (got[p][-1][0] if got[p] else -1) >= ends[p] - 1 for p in range(PARTITIONS)
        )
        while not done() and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got[msg.partition()].append((msg.offset(), msg.key().decode(), msg.value().decode()))
    finally:
        consumer.close()
    assert done(), "could not consume up to the high watermarks"
    return got
