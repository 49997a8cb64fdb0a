"""Consumer groups with every client the project tests with:
confluent-kafka (subscribe), kafka-python (KafkaConsumer(group_id=...)),
aiokafka, kafkajs (consumer.run) and kcat -G, each in a group of members
of its own kind over a 3-partition topic on a 3-node cluster.

- Stable membership: every message is consumed exactly once.
- Churn: a member joins, one leaves (gracefully), one is killed (kill -9);
  after each, newly produced messages are all consumed within the session
  timeout plus a rebalance, none skipped (at least once: the group's
  committed offsets reach the end of every partition).
- The coordinator's node killed (kill -9) while members consume: members
  find the new coordinator (the Raft leader of the group's offsets
  partition), committed offsets survive, consumption continues with no
  gap; the time from the kill to the first message consumed after it is
  printed.
"""

import collections
import time

import pytest
from conftest import Cluster, wait_until
from groups import (
    CLIENTS, SESSION_S, Member, committed, consumed, create_topic, env_ok, produce,
    wait_assigned, wait_committed, wait_consumed,
)

# A new group waits this long for more members before its first rebalance.
GROUPS = {"initial_rebalance_delay_ms": 1000}
REBALANCE_S = 25  # generous bound for a rebalance on a loaded machine


@pytest.fixture
def group_cluster():
    c = Cluster(groups=GROUPS)
    try:
        yield c
    finally:
        c.stop()


def batch(tag, n=90):
    return [f"{tag}-{i}" for i in range(n)]


@pytest.mark.parametrize("client", CLIENTS)
def test_group_consumes_exactly_once_then_survives_join_leave_and_kill(group_cluster, client):
    if why := env_ok(client):
        pytest.fail(why)
    c = group_cluster
    topic, group = f"orders-{client}", f"group-{client}"
    create_topic(c.bootstrap, topic)
    members = [Member(client, c.bootstrap, topic, group) for _ in range(2)]
    try:
        # Stable membership: exactly once, once both members hold partitions.
        wait_assigned(c.bootstrap, group, 2)
        first = batch("stable")
        produce(c.bootstrap, topic, first)
        wait_consumed(members, first, 60, "stable")
        time.sleep(1)
        counts = collections.Counter(consumed(members))
        assert {v: n for v, n in counts.items() if n > 1} == {}, "consumed twice"
        assert all(m.values() for m in members), "both members got partitions"

        # A member joins.
        members.append(Member(client, c.bootstrap, topic, group))
        time.sleep(SESSION_S / 2)
        joined = batch("after-join")
        produce(c.bootstrap, topic, joined)
        took = wait_consumed(members, joined, SESSION_S + REBALANCE_S, "after a join")
        print(f"{client}: consumed after a join in {took:.1f}s")

        # A member leaves gracefully.
        members[0].leave()
        left = batch("after-leave")
        produce(c.bootstrap, topic, left)
        took = wait_consumed(members[1:], left, SESSION_S + REBALANCE_S, "after a leave")
        print(f"{client}: consumed after a leave in {took:.1f}s")

        # A member is killed: its partitions move once its session expires.
        members[1].kill()
        killed = batch("after-kill")
        produce(c.bootstrap, topic, killed)
        took = wait_consumed(members[2:], killed, SESSION_S + REBALANCE_S, "after a kill")
        print(f"{client}: consumed after a kill -9 in {took:.1f}s (session {SESSION_S}s)")

        everything = set(first + joined + left + killed)
        assert everything <= set(consumed(members)), "a message was skipped"
        wait_committed(c.bootstrap, topic, group)
    finally:
        for m in members:
            if m.alive():
                m.kill()


def coordinator_of(cluster, group):
    from confluent_kafka import ConsumerGroupTopicPartitions  # noqa: F401
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    deadline = time.monotonic() + 30
    while True:
        try:
            d = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
            return d.coordinator.id
        except Exception:  # noqa: BLE001 - not coordinated yet
            assert time.monotonic() < deadline, "no coordinator"
            time.sleep(0.5)


@pytest.mark.parametrize("client", ["confluent", "kafkajs"])
def test_coordinator_killed_members_find_the_new_one_with_offsets_intact(group_cluster, client):
    if why := env_ok(client):
        pytest.fail(why)
    import threading

    from confluent_kafka import Producer

    c = group_cluster
    topic, group = f"events-{client}", f"failover-{client}"
    create_topic(c.bootstrap, topic)
    members = [Member(client, c.bootstrap, topic, group) for _ in range(2)]
    acked, stop, sent = [], threading.Event(), [0]

    def keep_producing():
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 120000, "enable.idempotence": True})
        i = 0
        while not stop.is_set():
            v = f"ev-{i}"
            p.produce(topic, value=v, on_delivery=lambda err, m, v=v: err or acked.append(v))
            p.poll(0)
            i += 1
            sent[0] = i
            time.sleep(0.01)
        assert p.flush(120) == 0

    producer = threading.Thread(target=keep_producing)
    producer.start()
    try:
        wait_until("consumption before the kill", lambda: len(consumed(members)) > 200, 60)
        coordinator = coordinator_of(c, group)
        before = committed(c.bootstrap, topic, group)
        assert sum(o for o in before.values() if o > 0) > 0, f"nothing committed: {before}"
        killed_at, produced_before = time.monotonic(), sent[0]

        def after_kill():
            # Messages produced after the kill: not buffered in a client.
            return [t for m in members for t, _, _, v in list(m.consumed)
                    if int(v.split("-")[1]) > produced_before]

        c.kill(coordinator)
        wait_until("consumption after the kill", lambda: after_kill(), 60)
        print(f"{client}: kill -9 of coordinator node {coordinator} -> first message produced "
              f"after it consumed {min(after_kill()) - killed_at:.2f}s later")
        wait_until("a new coordinator", lambda: coordinator_of(c, group) != coordinator, 60)
        time.sleep(3)
    finally:
        stop.set()
        producer.join(timeout=150)
    try:
        wait_consumed(members, list(acked), 90, "every acknowledged message")
        after = wait_committed(c.bootstrap, topic, group, timeout=60)
        for p, offset in before.items():
            assert after[p] >= offset, f"partition {p}: committed {offset} went back to {after[p]}"
    finally:
        for m in members:
            if m.alive():
                m.kill()


