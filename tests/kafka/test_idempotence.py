"""Idempotent producers at the wire level: InitProducerId, and retried
batches appended once (also after every node restarted and replayed its
log), from raw requests so every answer is checked exactly."""

import struct
import time

from kafka.record.default_records import DefaultRecordBatchBuilder

from test_bad_input import batch, connect, parse_produce_v3, produce_v3, request
from test_clients import create_topic, wait_for_leaders

NONE, UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER, COORDINATOR_LOAD_IN_PROGRESS = 0, 3, 6, 14
OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH = 45, 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


def init_producer_id(addr, transactional_id=None, answer_within=30):
    """InitProducerId v0: (error, producer id, epoch). No answer within
    `answer_within` seconds fails the test (socket timeout)."""
    if transactional_id is None:
        tid = struct.pack(">h", -1)
    else:
        tid = struct.pack(">h", len(transactional_id)) + transactional_id.encode()
    with connect(addr) as s:
        s.settimeout(answer_within)
        body = request(s, 22, 0, tid + struct.pack(">i", 60000))
    _throttle, error, pid, epoch = struct.unpack(">ihqh", body[:16])
    return error, pid, epoch


def allocate(addr, timeout=30):
    """A producer id, retrying the retriable error (no metadata leader yet)."""
    deadline = time.monotonic() + timeout
    while True:
        error, pid, epoch = init_producer_id(addr)
        if error == NONE:
            assert epoch == 0
            return pid
        assert error == COORDINATOR_LOAD_IN_PROGRESS, error
        assert time.monotonic() < deadline, "no producer id allocated"
        time.sleep(0.2)


def idempotent_batch(pid, epoch, seq, count):
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, batch_size=1 << 20,
    )
    for i in range(count):
        b.append(i, timestamp=int(time.time() * 1000), key=b"k", value=b"v%d" % (seq + i), headers=[])
    return bytes(b.build())


def produce(cluster, records, timeout=30):
    """Produces to partition 0 through whichever node leads it: (error, base).
    Right after a restart a node may not have replayed the topic's creation
    yet (UNKNOWN_TOPIC_OR_PARTITION, retriable for clients too)."""
    deadline = time.monotonic() + timeout
    while True:
        for node in cluster.procs:
            try:
                with connect(cluster.kafka_addr(node)) as s:
                    _, error, base = parse_produce_v3(request(s, 0, 3, produce_v3(0, records)))
            except OSError:
                continue
            if error not in (NOT_LEADER, UNKNOWN_TOPIC_OR_PARTITION):
                return error, base
        assert time.monotonic() < deadline, "no node leads partition 0"
        time.sleep(0.2)


def restart_all(cluster):
    for node in list(cluster.procs):
        cluster.kill(node)
    for node in cluster.configs:
        cluster.start(node)
    for node in cluster.configs:
        cluster.wait_port(cluster.kafka_addr(node))


def test_producer_ids_are_unique_across_nodes_and_restarts(cluster):
    first = [allocate(cluster.kafka_addr(n)) for n in cluster.configs for _ in range(2)]
    assert len(set(first)) == len(first), first
    assert min(first) >= 0

    error, pid, _ = init_producer_id(cluster.kafka_addr(1), "my-transaction")
    assert (error, pid) == (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1)

    # Without a metadata quorum: a retriable error, answered (the broker
    # gives up waiting for the allocation after 5 s), not a hung request.
    cluster.kill(2)
    cluster.kill(3)
    error, pid, _ = init_producer_id(cluster.kafka_addr(1), answer_within=20)
    assert (error, pid) == (COORDINATOR_LOAD_IN_PROGRESS, -1)

    cluster.kill(1)
    restart_all(cluster)
    later = [allocate(cluster.kafka_addr(n)) for n in cluster.configs]
    assert len(set(later)) == len(later)
    assert min(later) > max(first), (first, later)


def test_retried_batches_are_appended_once(cluster):
    admin = create_topic(cluster.bootstrap)
    leader = wait_for_leaders(admin)[0]
    # Allocated on a node that does not lead partition 0 (nor, maybe, the
    # metadata group): the id is the cluster's, not a node's.
    pid = allocate(cluster.kafka_addr(1 if leader != 1 else 2))

    a = idempotent_batch(pid, 0, 0, 2)
    b = idempotent_batch(pid, 0, 2, 1)
    assert produce(cluster, a) == (NONE, 0)
    assert produce(cluster, a) == (NONE, 0), "a retry answers its original offset"
    assert produce(cluster, b) == (NONE, 2)
    assert produce(cluster, a) == (NONE, 0), "still within the window"
    assert produce(cluster, b) == (NONE, 2)
    assert produce(cluster, idempotent_batch(pid, 0, 5, 1))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    # A newer epoch starts over at 0 and fences the old one.
    c = idempotent_batch(pid, 1, 0, 1)
    assert produce(cluster, c) == (NONE, 3)
    assert produce(cluster, idempotent_batch(pid, 0, 3, 1))[0] == INVALID_PRODUCER_EPOCH
    # Nothing else was appended: the next offset is 4.
    assert produce(cluster, batch()) == (NONE, 4)

    # Every node rebuilds the producer state by replaying its log.
    restart_all(cluster)
    assert produce(cluster, c, timeout=60) == (NONE, 3), "retry after a restart"
    assert produce(cluster, idempotent_batch(pid, 1, 1, 1)) == (NONE, 5)
    assert produce(cluster, batch()) == (NONE, 6)
