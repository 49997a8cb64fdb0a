"""The negative control: the original bug, reproduced and healed.

With the default plugin switched off, a Raft election (here a leadership
transfer, as an operator or a balancing policy would ask for) leaves the
stored assignment naming the old leader. Metadata sends clients there, and
every produce fails with NOT_LEADER_OR_FOLLOWER — the failure leaderhook was
born from. Switching the plugin back on heals it through the resync: the
assignment follows Raft again and the same produce succeeds.
"""

import time

import kafka
import kafka.errors
import pytest

from conftest import cli, raft_leader, wait_until
from test_bad_input import connect, served_list_offsets
from test_clients import TOPIC, create_topic, leaders, wait_for_leaders


def produce_one(bootstrap):
    """One acks=all send to partition 0 with no client retries, so the
    broker's answer reaches the caller as is. Returns the record metadata or
    raises the client's exception."""
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        retries=0,
        enable_idempotence=False,
        request_timeout_ms=10000,
    )
    try:
        return producer.send(TOPIC, key=b"k", value=b"v", partition=0).get(timeout=30)
    finally:
        producer.close(timeout=5)


def test_without_the_plugin_metadata_goes_stale_and_produce_fails(cluster_without_safety_net):
    cluster = cluster_without_safety_net
    admin = create_topic(cluster.bootstrap)
    old = wait_for_leaders(admin)[0]
    # Named in Metadata a moment before its first entry commits: wait until
    # it serves, or the send (no client retries) would race that commit.
    with connect(cluster.kafka_addr(old)) as s:
        assert served_list_offsets(s)[:2] == (0, 0)
    assert produce_one(cluster.bootstrap).offset == 0, "healthy before the control"

    cli(cluster, "plugin", "disable", "assign-leader")
    new = next(n for n in cluster.configs if n != old)
    cli(cluster, "partitions", "transfer", f"{TOPIC}-0", "--to", str(new))
    wait_until("Raft to move the leadership", lambda: raft_leader(cluster, f"{TOPIC}-0") == new, 30)

    # Raft moved; the assignment did not: Metadata still names the old node.
    time.sleep(3)  # longer than the resync period: nothing heals it while off
    assert leaders(admin)[0] == old
    with pytest.raises(kafka.errors.NotLeaderForPartitionError):
        produce_one(cluster.bootstrap)

    # The plugin back on: the new leader's resync re-delivers its leadership,
    # the assignment follows Raft, and the same produce goes through.
    cli(cluster, "plugin", "enable", "assign-leader")
    wait_until("the assignment to follow Raft", lambda: leaders(admin)[0] == new, 30)
    assert produce_one(cluster.bootstrap).offset == 1
