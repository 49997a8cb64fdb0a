"""Storage that lasts, judged by real clients: records read from disk
survive restarts from checkpoints (idempotent producer state too), retention
by time and by bytes moves the log start and frees disk, a follower that
slept through retention compactions catches up by a snapshot and serves the
same bytes as the others, kill -9 during compactions loses nothing
acknowledged, and a deleted topic's files are gone."""

import os
import pathlib
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Cluster
from test_clients import TOPIC
from test_idempotence import allocate, idempotent_batch, produce as produce_raw, restart_all
from conftest import cli, raft_leader, wait_until

# Small files and quick purges, so reclaimed disk shows within a test.
STORAGE = {
    "checkpoint_every_entries": 5,
    "checkpoint_every_bytes": 65536,
    "log_file_bytes": 1 << 20,
    "purge_threshold_bytes": 2 << 20,
    "purge_interval_ms": 500,
}
RAFT = {"resync_ms": 500}


@pytest.fixture
def storage_cluster(monkeypatch):
    # Info logs (the brokers' default is warn): some tests read them.
    monkeypatch.setenv("RUST_LOG", "info")
    c = Cluster(raft=RAFT, storage=STORAGE)
    try:
        yield c
    finally:
        c.stop()


def create(bootstrap, name, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=3, config=config or {})],
        operation_timeout=20,
        request_timeout=30,
    )
    futures[name].result(timeout=40)
    deadline = time.monotonic() + 30
    while True:
        topic = admin.list_topics(name, timeout=10).topics[name]
        if len(topic.partitions) == partitions and all(p.leader > 0 for p in topic.partitions.values()):
            return
        assert time.monotonic() < deadline, "no leaders"
        time.sleep(0.2)


def produce(bootstrap, topic, count, size=1024, idempotent=False, partition=None):
    """Sends `count` values of `size` bytes; returns [(partition, offset, value)] acked."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": idempotent,
        "linger.ms": 5,
        # Small batches: retention deletes whole runs of 64 KiB.
        "batch.size": 16384,
        "message.timeout.ms": 60000,
    })
    acked, errors = [], []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    for i in range(count):
        value = b"%08d" % i + os.urandom(max(0, size - 8))
        kwargs = {"partition": partition} if partition is not None else {}
        while True:
            try:
                producer.produce(topic, value, on_delivery=done, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(90) == 0
    assert not errors, errors[:3]
    return acked


def watermarks(consumer, topic, partition):
    deadline = time.monotonic() + 30
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
        except Exception as e:  # a leader moving right now: retriable
            assert time.monotonic() < deadline, e
            time.sleep(0.3)


def log_start(bootstrap, topic, partition=0):
    """The partition's log start offset, as ListOffsets answers it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return watermarks(consumer, topic, partition)[0]
    finally:
        consumer.close()


def settled(bootstrap, topic, partition=0, quiet=2.0):
    """A condition for wait_until: the log start has not moved for `quiet` s."""
    seen = {"start": None, "since": 0.0}

    def check():
        start, now = log_start(bootstrap, topic, partition), time.monotonic()
        if start != seen["start"]:
            seen.update(start=start, since=now)
        return now - seen["since"] >= quiet

    return check


def read_all(bootstrap, topic, partition=0):
    """(log start, [(offset, value)]) read from the partition's leader.

    Retention may delete the front of the log while this reads (slow
    machines): the read then starts again from the new log start."""
    deadline = time.monotonic() + 60
    while True:
        consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.max.bytes": 1 << 20,
            # Never skip silently: a position below the log start is an error.
            "auto.offset.reset": "error",
        })
        try:
            low, high = watermarks(consumer, topic, partition)
            consumer.assign([TopicPartition(topic, partition, low)])
            records, restart = [], False
            while not restart and (records[-1][0] + 1 if records else low) < high:
                assert time.monotonic() < deadline, f"read {len(records)} of {high - low}"
                msg = consumer.poll(1)
                if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
                    continue
                if msg.error() and msg.error().code() == KafkaError._AUTO_OFFSET_RESET:
                    restart = True  # deleted under us by retention
                    continue
                assert not msg.error(), msg.error()
                records.append((msg.offset(), msg.value()))
            if not restart:
                return low, records
        finally:
            consumer.close()


def disk_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def data_dirs(cluster):
    return [cluster.dir / f"node{n}" for n in cluster.configs]


def transfer(cluster, partition, to):
    cli(cluster, "partitions", "transfer", partition, "--to", str(to))
    try:
        wait_until(f"{partition} led by {to}", lambda: raft_leader(cluster, partition) == to, timeout=30)
    except AssertionError:
        print(cli(cluster, "status"))
        for n in cluster.configs:
            text = (cluster.dir / f"node{n}.log").read_text(errors="replace")
            print(n, "\n".join(l for l in text.splitlines() if "transfer" in l.lower() or "group=2" in l)[-3000:])
        raise


def test_restarts_resume_from_checkpoints_with_every_record_and_the_producer_state(storage_cluster):
    c = storage_cluster
    create(c.bootstrap, TOPIC, partitions=3)
    acked = produce(c.bootstrap, TOPIC, 1500, idempotent=True)
    # A raw idempotent batch (to partition 0), answered its offset again
    # after the restart.
    pid = allocate(c.kafka_addr(1))
    error, base = produce_raw(c, idempotent_batch(pid, 0, 0, 2))
    assert error == 0

    restart_all(c)
    assert produce_raw(c, idempotent_batch(pid, 0, 0, 2)) == (0, base), "retry after restart"
    assert produce_raw(c, idempotent_batch(pid, 0, 2, 1)) == (0, base + 2)
    for p in range(3):
        sent = [(o, v) for (part, o, v) in acked if part == p]
        low, read = read_all(c.bootstrap, TOPIC, p)
        assert low == 0
        got = [r for r in read if not r[1].startswith(b"v")]  # not the raw batch's
        assert got == sorted(sent), f"partition {p}: {len(got)} read of {len(sent)} acked"


def test_retention_by_time_and_bytes_moves_the_log_start_and_frees_disk(storage_cluster):
    c = storage_cluster
    create(c.bootstrap, "by-time", config={"retention.ms": "3000"})
    create(c.bootstrap, "by-bytes", config={"retention.bytes": str(300 << 10)})
    before = [disk_bytes(d) for d in data_dirs(c)]
    produce(c.bootstrap, "by-time", 2000, size=1024)
    acked = produce(c.bootstrap, "by-bytes", 2000, size=1024)
    grown = [disk_bytes(d) for d in data_dirs(c)]

    # Size: what stays is at least 300 KiB and far less than the 2 MiB sent,
    # and it is the newest records, byte for byte.
    wait_until("by-bytes trimmed", lambda: log_start(c.bootstrap, "by-bytes") > 1000, timeout=30)
    start, read = read_all(c.bootstrap, "by-bytes")
    assert start > 0 and read[0][0] == start
    assert 300 <= len(read) < 1000, len(read)
    assert read == [(o, v) for (_, o, v) in acked if o >= start]

    # Time: once every record is older than 3 s, all but the newest run goes.
    wait_until("by-time trimmed", lambda: log_start(c.bootstrap, "by-time") > 1500, timeout=30)
    start, read = read_all(c.bootstrap, "by-time")
    assert len(read) == 2000 - start

    # Reading below the log start is out of range.
    consumer = Consumer({
        "bootstrap.servers": c.bootstrap, "group.id": "x", "auto.offset.reset": "error",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition("by-time", 0, 0)])
    error = None
    deadline = time.monotonic() + 20
    while error is None and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is not None and msg.error():
            error = msg.error()
    consumer.close()
    assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET, error

    # The deleted records' disk is reclaimed (raft-engine purges whole files).
    wait_until(
        "disk reclaimed",
        lambda: sum(disk_bytes(d) for d in data_dirs(c)) < sum(grown) - 3 * (2 << 20),
        timeout=60,
    )
    print(f"\ndisk per node: before {before}, after producing {grown}, "
          f"after retention {[disk_bytes(d) for d in data_dirs(c)]}")


def test_a_follower_behind_retention_catches_up_by_snapshot_and_serves_the_same_bytes(storage_cluster):
    c = storage_cluster
    create(c.bootstrap, "t", config={"retention.bytes": str(200 << 10)})
    produce(c.bootstrap, "t", 200, size=1024, partition=0)
    leader = raft_leader(c, "t-0")
    sleeper = next(n for n in c.configs if n != leader)
    c.kill(sleeper)
    # Several compactions past everything the sleeper has.
    produce(c.bootstrap, "t", 3000, size=1024, partition=0)
    wait_until("trimmed", lambda: log_start(c.bootstrap, "t") > 1000, timeout=30)
    # Retention deletes run after run: let it finish, so every view below
    # (read at different times) has the same log start to agree on.
    wait_until("retention settled", settled(c.bootstrap, "t"), timeout=60)
    c.start(sleeper)
    c.wait_port(c.kafka_addr(sleeper))
    logs = lambda: (c.dir / f"node{sleeper}.log").read_text(errors="replace")
    wait_until("the sleeper restored from a snapshot",
               lambda: "partition restored from the leader's snapshot" in logs(), timeout=60)

    # Every replica, as leader in turn, serves the same log start and bytes.
    views = {}
    for node in c.configs:
        transfer(c, "t-0", node)
        views[node] = read_all(c.bootstrap, "t")
    first = views[leader]
    for node, view in views.items():
        assert view[0] == first[0], f"node {node} log start {view[0]} vs {first[0]}"
        assert view[1] == first[1], f"node {node} serves other records"
    assert len(first[1]) >= 200


def test_kill_9_during_compactions_loses_nothing_acknowledged(storage_cluster):
    c = storage_cluster
    create(c.bootstrap, "t", config={"retention.bytes": str(400 << 10)})
    acked = []
    for round in range(3):
        acked += produce(c.bootstrap, "t", 700, size=1024, partition=0)
        victim = raft_leader(c, "t-0") if round % 2 == 0 else (raft_leader(c, "t-0") % 3) + 1
        c.kill(victim)
        acked += produce(c.bootstrap, "t", 300, size=1024, partition=0)
        c.start(victim)
        c.wait_port(c.kafka_addr(victim))
    wait_until("leaders again", lambda: raft_leader(c, "t-0"), timeout=60)
    # Let the last retention decisions apply everywhere.
    wait_until("retention settled", settled(c.bootstrap, "t"), timeout=60)
    start, read = read_all(c.bootstrap, "t")
    expected = sorted((o, v) for (_, o, v) in acked if o >= start)
    assert read == expected, "exactly the acknowledged records above the log start"
    assert len(read) >= 300
    # And every replica, as leader, serves the same.
    for node in c.configs:
        transfer(c, "t-0", node)
        assert read_all(c.bootstrap, "t") == (start, read), f"node {node}"


def test_a_deleted_topics_files_are_gone(storage_cluster):
    c = storage_cluster
    create(c.bootstrap, "doomed", partitions=2)
    produce(c.bootstrap, "doomed", 6000, size=1024)
    full = [disk_bytes(d) for d in data_dirs(c)]
    assert all(f > 6 << 20 for f in full), full
    cli(c, "topics", "delete", "doomed")
    # What stays: the active log file and the rewrite file (1 MiB each here).
    floor = 2 * STORAGE["log_file_bytes"] + (256 << 10)
    wait_until(
        "disk reclaimed on every node",
        lambda: all(disk_bytes(d) <= floor for d in data_dirs(c)),
        timeout=60,
    )
    print(f"\ndisk per node: {full} with the topic, {[disk_bytes(d) for d in data_dirs(c)]} after deleting it")
