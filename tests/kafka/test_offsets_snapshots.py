"""Consumer offsets partitions snapshot their groups and compact their Raft
logs, judged by real clients (confluent-kafka) on a 3-node cluster whose
`[raft]` snapshots come every 20 entries, keeping 5:

- a group committing offsets many times leaves every replica of its offsets
  partition with a compacted Raft log (first index moved, a short tail);
- after kill -9 of every node, each restarts from its snapshot plus the log
  tail, and the group's committed offsets are exactly the last committed;
- a node stopped while the others commit past several compactions rejoins
  by the leader's snapshot and, leading the offsets partition, serves the
  same committed offsets.
"""

import json

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from conftest import Cluster, wait_until
from test_idempotence import restart_all
from conftest import cli, raft_leader
from test_storage import create, transfer

EVERY, KEEP = 20, 5
RAFT = {"resync_ms": 500, "snapshot_every_entries": EVERY, "snapshot_keep_entries": KEEP}
OFFSETS_PARTITIONS = 10  # [groups] offsets_topic_partitions, the default
TOPIC, PARTITIONS = "commits", 3


@pytest.fixture
def snap_cluster(monkeypatch):
    # Info logs (the brokers' default is warn): the tests read restores.
    monkeypatch.setenv("RUST_LOG", "info")
    c = Cluster(raft=RAFT)
    try:
        yield c
    finally:
        c.stop()


def offsets_partition(group):
    """The group's offsets partition, as Kafka (and the broker) computes it."""
    h = 0
    for unit in group.encode("utf-16-be").hex(" ", 2).split():
        h = (h * 31 + int(unit, 16)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    h = 0 if h == -(1 << 31) else abs(h)
    return f"__consumer_offsets-{h % OFFSETS_PARTITIONS}"


def raft_logs(cluster, partition):
    """{node: {first_index, last_index, applied}} of the partition's replicas
    on the nodes that answer."""
    logs = {}
    for line in cli(cluster, "status", "--json").splitlines():
        if not line.startswith("{"):
            continue
        status = json.loads(line)
        for replica in status["replicas"]:
            if replica["partition"] == partition and replica.get("raft_log"):
                logs[status["node"]] = replica["raft_log"]
    return logs


def commit_many(bootstrap, group, start, count):
    """Commits partition 0 once, then `count` times (synchronously, outside
    the group protocol: generation -1) new offsets of the other partitions;
    returns the last committed {partition: offset}. Partition 0's offset is
    then only in an early record: one that compaction removes, so only a
    snapshot carries it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})

    def commit(offsets):
        tps = [TopicPartition(TOPIC, p, o) for p, o in offsets.items()]
        for attempt in range(50):
            try:
                consumer.commit(offsets=tps, asynchronous=False)
                return
            except KafkaException as e:  # coordinator moving: retriable
                assert attempt < 49, e
                consumer.poll(0.2)

    try:
        last = {0: start * 10}
        commit(last)
        for i in range(start, start + count):
            offsets = {p: i * 10 + p for p in range(1, PARTITIONS)}
            commit(offsets)
            last.update(offsets)
        return last
    finally:
        consumer.close()


def committed(bootstrap, group):
    """The group's committed offsets as a fresh client fetches them, or None
    while no coordinator answers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    except KafkaException:
        return None
    finally:
        consumer.close()


def log_of(cluster, node):
    return (cluster.dir / f"node{node}.log").read_text(errors="replace")


def compacted(cluster, partition, beyond, nodes):
    """Every replica on `nodes` has compacted its log past `beyond`, keeping
    a short tail (at most a snapshot interval, the kept entries and a few in
    flight)."""
    logs = raft_logs(cluster, partition)
    ok = set(logs) >= set(nodes) and all(
        logs[n]["first_index"] > beyond
        and logs[n]["last_index"] - logs[n]["first_index"] < EVERY + KEEP + 10
        for n in nodes
    )
    return ok and logs


def test_commits_compact_the_offsets_log_and_kill_9_of_all_restarts_from_snapshots(snap_cluster):
    c = snap_cluster
    create(c.bootstrap, TOPIC, partitions=PARTITIONS)
    group = "snapshot-group"
    partition = offsets_partition(group)
    last = commit_many(c.bootstrap, group, 1, 8 * EVERY)

    # (a) Every replica's log of the offsets partition is compacted: more
    # than 160 entries written, the first kept is far past the start.
    logs = wait_until(f"{partition} compacted on every replica",
                      lambda: compacted(c, partition, 5 * EVERY, c.configs), timeout=30)
    print(f"\n{partition} Raft logs after {8 * EVERY} commits: {logs}")
    assert committed(c.bootstrap, group) == last

    # (b) kill -9 of every node: each restores the group store from its
    # snapshot and replays only the tail; the offsets are the last ones.
    restart_all(c)
    got = wait_until("committed offsets after the restart",
                     lambda: committed(c.bootstrap, group), timeout=60)
    assert got == last, f"after restart {got}, last committed {last}"
    for n in c.configs:
        assert "offsets partition restored from its snapshot" in log_of(c, n), f"node {n}"
    # And commits continue on top of the restored store.
    last = commit_many(c.bootstrap, group, 1000, 3)
    assert wait_until("the new commit", lambda: committed(c.bootstrap, group), timeout=30) == last


def test_a_node_behind_the_compacted_log_rejoins_by_snapshot_and_serves_the_offsets(snap_cluster):
    c = snap_cluster
    create(c.bootstrap, TOPIC, partitions=PARTITIONS)
    group = "sleeper-group"
    partition = offsets_partition(group)
    commit_many(c.bootstrap, group, 1, EVERY)
    leader = wait_until(f"{partition} leader", lambda: raft_leader(c, partition), timeout=30)
    sleeper = next(n for n in c.configs if n != leader)
    slept_at = raft_logs(c, partition)[sleeper]["last_index"]
    c.kill(sleeper)

    # Several compactions past everything the sleeper has.
    last = commit_many(c.bootstrap, group, 100, 6 * EVERY)
    awake = [n for n in c.configs if n != sleeper]
    wait_until("compacted past the sleeper", lambda: compacted(c, partition, slept_at + 1, awake),
               timeout=30)

    c.start(sleeper)
    c.wait_port(c.kafka_addr(sleeper))
    wait_until("the sleeper restored from the leader's snapshot",
               lambda: "offsets partition restored from the leader's snapshot" in log_of(c, sleeper),
               timeout=60)
    transfer(c, partition, sleeper)
    got = wait_until("committed offsets from the sleeper as coordinator",
                     lambda: committed(c.bootstrap, group), timeout=60)
    assert raft_leader(c, partition) == sleeper
    assert got == last, f"the sleeper serves {got}, last committed {last}"
    logs = raft_logs(c, partition)[sleeper]
    assert logs["first_index"] > slept_at + 1, logs
