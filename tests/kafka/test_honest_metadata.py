"""Metadata tells the truth about nodes: a killed broker leaves the broker
list within the session timeout (so fresh clients that pick a broker from
Metadata all succeed), every node names the same controller, offline
replicas are listed, and a partition whose quorum is lost answers leader -1
(LEADER_NOT_AVAILABLE) instead of a dead node, until quorum returns.

Read with raw Metadata v9 requests (what every client sends first) and
exercised with fresh kafka-python and confluent-kafka clients."""

import struct
import time

import kafka
import kafka.errors
import pytest
from confluent_kafka import Producer

from conftest import Cluster, wait_until
from test_bad_input import connect, request
from test_clients import PARTITIONS, TOPIC, create_topic, wait_for_leaders

SESSION_MS = 2000


def metadata_v9(addr):
    """(controller, {broker id}, {partition: (error, leader, offline)})
    for TOPIC, from a raw Metadata v9 request (flexible encoding)."""
    topic = TOPIC.encode()
    # topics: compact array of one (compact name, tagged fields);
    # allow auto creation, include cluster/topic authorized ops; tags.
    body = (
        bytes([2, len(topic) + 1]) + topic + b"\x00"
        + b"\x00\x00\x00" + b"\x00"
    )
    with connect(addr) as s:
        data = request_flexible(s, 3, 9, body)
    return parse_metadata_v9(data)


def request_flexible(s, key, version, body, correlation=11):
    # Request header v2: key, version, correlation, client id (nullable
    # string, not compact), tagged fields.
    header = struct.pack(">hhih", key, version, correlation, 4) + b"test" + b"\x00"
    frame = header + body
    s.sendall(struct.pack(">i", len(frame)) + frame)
    from test_bad_input import recv_exact

    size = struct.unpack(">i", recv_exact(s, 4))[0]
    data = recv_exact(s, size)
    assert struct.unpack(">i", data[:4])[0] == correlation
    return data[5:]  # response header v1: correlation id + tagged fields


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        value = struct.unpack(fmt, self.data[self.pos : self.pos + size])
        self.pos += size
        return value[0] if len(value) == 1 else value

    def uvarint(self):
        shift = value = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self):
        n = self.uvarint() - 1
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()

    def int32s(self):
        return [self.take(">i") for _ in range(self.uvarint() - 1)]


def parse_metadata_v9(data):
    r = Reader(data)
    r.take(">i")  # throttle
    brokers = set()
    for _ in range(r.uvarint() - 1):
        node = r.take(">i")
        r.compact_string()
        r.take(">i")
        r.compact_string()  # rack
        r.tags()
        brokers.add(node)
    r.compact_string()  # cluster id
    controller = r.take(">i")
    partitions = {}
    for _ in range(r.uvarint() - 1):
        r.take(">h")  # topic error
        r.compact_string()
        r.take(">b")  # internal
        for _ in range(r.uvarint() - 1):
            error, index, leader, _epoch = r.take(">hiii")
            r.int32s()  # replicas
            r.int32s()  # isr
            offline = set(r.int32s())
            r.tags()
            partitions[index] = (error, leader, offline)
        r.take(">i")  # authorized operations
        r.tags()
    return controller, brokers, partitions


def produce_one(bootstrap, value):
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", retries=5, request_timeout_ms=10000
    )
    try:
        producer.send(TOPIC, value).get(timeout=20)
    finally:
        producer.close(timeout=5)


@pytest.fixture
def short_session():
    c = Cluster(raft={"session_timeout_ms": SESSION_MS})
    try:
        yield c
    finally:
        c.stop()


def test_dead_brokers_leave_metadata_and_quorum_loss_shows_no_leader(short_session):
    c = short_session
    wait_for_leaders(create_topic(c.bootstrap))
    addr = {n: c.kafka_addr(n) for n in c.configs}
    controller, brokers, _ = metadata_v9(addr[1])
    assert brokers == {1, 2, 3}
    # One controller, named alike by every node.
    assert {metadata_v9(addr[n])[0] for n in (1, 2, 3)} == {controller}

    victim = 3
    c.kill(victim)
    killed_at = time.monotonic()
    for n in (1, 2):
        wait_until(
            f"node {n} to drop node {victim}",
            lambda: metadata_v9(addr[n])[1] == {1, 2},
            timeout=SESSION_MS / 1000 + 10,
        )
    print(f"\nnode {victim} left Metadata {time.monotonic() - killed_at:.1f} s after kill -9 "
          f"(session timeout {SESSION_MS} ms)")
    _, _, partitions = metadata_v9(addr[1])
    assert all(offline == {victim} for _, _, offline in partitions.values()), partitions
    survivors_controller = {metadata_v9(addr[n])[0] for n in (1, 2)}
    assert len(survivors_controller) == 1 and survivors_controller <= {1, 2}

    # Fresh clients bootstrapped with every address (the dead one too) all
    # succeed: Metadata never sends them to the dead node.
    bootstrap = ",".join(addr.values())
    for i in range(6):
        produce_one(bootstrap, f"kafka-python {i}".encode())
        p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 20000})
        failures = []
        p.produce(TOPIC, f"confluent {i}".encode(), on_delivery=lambda e, m: e and failures.append(e))
        assert p.flush(30) == 0 and not failures, failures

    # Quorum lost: node 1 alone answers leader -1 for every partition.
    c.kill(2)
    lost = wait_until(
        "leader -1 everywhere on node 1",
        lambda: (lambda p: p if all(leader == -1 for _, leader, _ in p.values()) else None)(
            metadata_v9(addr[1])[2]
        ),
        timeout=SESSION_MS / 1000 + 10,
    )
    assert len(lost) == PARTITIONS
    assert all(error == 5 for error, _, _ in lost.values()), lost  # LEADER_NOT_AVAILABLE
    assert metadata_v9(addr[1])[1] == {1}

    # Quorum back: leaders return and producing works again.
    c.start(2)
    c.start(victim)
    wait_until(
        "leaders again",
        lambda: all(leader > 0 for _, leader, _ in metadata_v9(addr[1])[2].values()),
        timeout=60,
    )

    # Assignments follow the elections after the restart within moments;
    # a client retrying NOT_LEADER_OR_FOLLOWER for a few seconds succeeds.
    def recovered():
        try:
            produce_one(bootstrap, b"after recovery")
            return True
        except kafka.errors.KafkaError:
            return False

    wait_until("a produce after recovery", recovered, timeout=60)
