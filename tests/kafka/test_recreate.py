"""A topic deleted and created again under the same name is a new topic
everywhere: after several leadership transfers of the old one (its terms
well above the new one's), the new one's first elections reach Metadata and
it serves produce within seconds (the hook queue, assignments and stored
commands are keyed by topic id or Raft group, never by name)."""

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import cli, raft_leader, wait_until

TOPIC = "reborn"


def create(admin):
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3)],
                        operation_timeout=20)[TOPIC].result(timeout=40)


def leader_and_epoch(admin):
    p = admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions.get(0)
    return (p.leader, getattr(p, "leader_epoch", None)) if p else (-1, None)


def produce_one(bootstrap, value):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 10000})
    result = []
    producer.produce(TOPIC, value, on_delivery=lambda e, m: result.append(e or m.offset()))
    producer.flush(15)
    return result[0] if result else "no answer"


def test_a_recreated_topic_serves_within_seconds(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    create(admin)
    wait_until("a leader", lambda: leader_and_epoch(admin)[0] > 0, timeout=30)
    # Several transfers: the old topic's terms climb.
    for _ in range(4):
        leader = raft_leader(cluster, f"{TOPIC}-0")
        target = leader % 3 + 1
        cli(cluster, "partitions", "transfer", f"{TOPIC}-0", "--to", str(target))
        wait_until(f"led by {target}", lambda: raft_leader(cluster, f"{TOPIC}-0") == target,
                   timeout=30)
    assert produce_one(cluster.bootstrap, b"old") == 0

    cli(cluster, "topics", "delete", TOPIC)
    wait_until("deleted", lambda: TOPIC not in admin.list_topics(timeout=10).topics, timeout=30)
    create(admin)
    started = time.monotonic()
    wait_until(
        "the new topic served",
        lambda: produce_one(cluster.bootstrap, b"new") == 0,
        timeout=20,
    )
    took = time.monotonic() - started
    print(f"\nre-created topic served {took:.2f} s after its creation")
    # A new topic: offsets start again at 0 and the old record is gone.
    leader, _ = leader_and_epoch(admin)
    assert leader > 0
