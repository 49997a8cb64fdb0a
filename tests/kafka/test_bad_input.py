"""Bad input from raw sockets: oversize, negative and malformed frames,
unknown API keys and versions, hostile counts, and a record batch with a
bad CRC. Each gets a Kafka error or a closed connection; the broker keeps
serving everyone else. Also the edges clients meet: leader epochs behind or
ahead of the broker's, and a partition nobody has written to yet."""

import socket
import subprocess
import struct
import time

from kafka.record.default_records import DefaultRecordBatchBuilder

from test_clients import TOPIC, create_topic, wait_for_leaders


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.settimeout(10)
    return s


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def request(s, key, version, body, correlation=7):
    header = struct.pack(">hhih", key, version, correlation, 4) + b"test"
    frame = header + body
    s.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    data = recv_exact(s, size)
    assert struct.unpack(">i", data[:4])[0] == correlation
    return data[4:]


def closed(s):
    """True if the broker closed the connection (reads EOF or a reset)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def api_versions_ok(addr):
    with connect(addr) as s:
        body = request(s, 18, 0, b"")
        return struct.unpack(">h", body[:2])[0] == 0


def produce_v3(partition, records, acks=-1):
    topic = TOPIC.encode()
    return (
        struct.pack(">hhi", -1, acks, 10000)  # null transactional id, acks, timeout
        + struct.pack(">i", 1)
        + struct.pack(">h", len(topic)) + topic
        + struct.pack(">i", 1)
        + struct.pack(">ii", partition, len(records)) + records
    )


def parse_produce_v3(body):
    # [topic: name, [index, error, base_offset, log_append_time]], throttle
    pos = 4
    (name_len,) = struct.unpack(">h", body[pos : pos + 2])
    pos += 2 + name_len + 4
    index, error, base = struct.unpack(">ihq", body[pos : pos + 14])
    return index, error, base


def batch(key=b"k", value=b"v"):
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )
    b.append(0, timestamp=int(time.time() * 1000), key=key, value=value, headers=[])
    return bytes(b.build())


def test_bad_frames_close_only_that_connection(cluster):
    addr = cluster.kafka_addr(1)
    cases = {
        "oversize": struct.pack(">i", 200 * 1024 * 1024),
        "negative size": struct.pack(">i", -5),
        "short frame": struct.pack(">i", 3) + b"\x00\x12\x00",
        "unknown api key": struct.pack(">i", 10) + struct.pack(">hhih", 999, 0, 1, -1),
        "unsupported version": struct.pack(">i", 10) + struct.pack(">hhih", 3, 99, 1, -1),
        "truncated body": struct.pack(">i", 14) + struct.pack(">hhih", 3, 1, 1, -1) + struct.pack(">i", 5),
        "garbage": struct.pack(">i", 64) + bytes(range(64)),
    }
    for name, frame in cases.items():
        with connect(addr) as s:
            s.sendall(frame)
            assert closed(s), name
        assert api_versions_ok(addr), f"broker stopped serving after {name}"


def test_api_versions_too_new_is_answered_with_unsupported_version(cluster):
    with connect(cluster.kafka_addr(2)) as s:
        body = request(s, 18, 99, b"")
        (error,) = struct.unpack(">h", body[:2])
        assert error == 35  # UNSUPPORTED_VERSION, with our versions (v0 body)
        (count,) = struct.unpack(">i", body[2:6])
        keys = {struct.unpack(">hhh", body[6 + 6 * i : 12 + 6 * i])[0] for i in range(count)}
        assert {0, 1, 2, 3, 18, 19, 20} <= keys


def test_bad_crc_is_corrupt_message_and_non_leaders_refuse(cluster):
    admin = create_topic(cluster.bootstrap)
    leader = wait_for_leaders(admin)[0]
    good = batch()
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # the CRC covers the records
    with connect(cluster.kafka_addr(leader)) as s:
        # Named a moment before it serves: produce only once it does.
        assert served_list_offsets(s)[:2] == (0, 0)
        _, error, _ = parse_produce_v3(request(s, 0, 3, produce_v3(0, bytes(bad))))
        assert error == 2  # CORRUPT_MESSAGE
        _, error, base = parse_produce_v3(request(s, 0, 3, produce_v3(0, good)))
        assert (error, base) == (0, 0)
    for node in cluster.configs:
        if node != leader:
            with connect(cluster.kafka_addr(node)) as s:
                _, error, _ = parse_produce_v3(request(s, 0, 3, produce_v3(0, good)))
                assert error == 6  # NOT_LEADER_OR_FOLLOWER


def test_hostile_lengths_do_not_take_the_broker_down(cluster):
    """Counts read off the wire must not size allocations: a 30-byte
    Metadata request claiming 2^31 - 1 topics once made the broker reserve
    154 GB and abort (see vendor/README.md)."""
    addr = cluster.kafka_addr(1)

    def frame(key, version, body, flexible=False):
        header = struct.pack(">hhih", key, version, 7, 4) + b"test"
        if flexible:
            header += b"\x00"  # no tagged fields
        return struct.pack(">i", len(header + body)) + header + body

    max_varint = b"\xff\xff\xff\xff\x0f"  # unsigned varint 2^32 - 1
    cases = {
        "Metadata v4, 2^31-1 topics": frame(3, 4, struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 16),
        "Metadata v12, compact 2^32-2 topics": frame(3, 12, max_varint + b"\x00" * 16, flexible=True),
        "Produce v3, 2^31-1 topics": frame(
            0, 3, struct.pack(">hhii", -1, -1, 1000, 0x7FFFFFFF) + b"\x00" * 16
        ),
        "CreateTopics v2, 2^31-1 topics": frame(19, 2, struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 16),
    }
    for name, data in cases.items():
        with connect(addr) as s:
            s.sendall(data)
            assert closed(s), name
        assert cluster.procs[1].poll() is None, f"broker died on {name}"
        assert api_versions_ok(addr), f"broker stopped serving after {name}"


def list_offsets_v4(s, partition, leader_epoch, timestamp=-1):
    """ListOffsets v4 for one partition of TOPIC; returns (error, offset, epoch)."""
    topic = TOPIC.encode()
    body = (
        struct.pack(">ib", -1, 0)  # replica id, isolation level
        + struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
        + struct.pack(">i", 1) + struct.pack(">iiq", partition, leader_epoch, timestamp)
    )
    data = request(s, 2, 4, body)
    pos = 4 + 4  # throttle time, topic count
    (name_len,) = struct.unpack(">h", data[pos : pos + 2])
    pos += 2 + name_len + 4  # name, partition count
    index, error, _, offset, epoch = struct.unpack(">ihqqi", data[pos : pos + 26])
    assert index == partition
    return error, offset, epoch


def served_list_offsets(s):
    """ListOffsets (latest, no epoch) from a just-assigned leader: it can be
    named a moment before its first entry commits and it serves, answering
    NOT_LEADER_OR_FOLLOWER (retriable) until then."""
    deadline = time.monotonic() + 10
    while (answer := list_offsets_v4(s, 0, -1))[0] == 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def test_client_leader_epochs_are_checked(cluster):
    """A client that sends the leader epoch it knows gets FENCED_LEADER_EPOCH
    when it is behind and UNKNOWN_LEADER_EPOCH when it is ahead."""
    admin = create_topic(cluster.bootstrap)
    leader = wait_for_leaders(admin)[0]
    with connect(cluster.kafka_addr(leader)) as s:
        error, offset, epoch = served_list_offsets(s)
        assert (error, offset) == (0, 0) and epoch >= 1
        assert list_offsets_v4(s, 0, epoch)[0] == 0
        assert list_offsets_v4(s, 0, epoch - 1)[0] == 74  # FENCED_LEADER_EPOCH
        assert list_offsets_v4(s, 0, epoch + 1)[0] == 75  # UNKNOWN_LEADER_EPOCH


def test_an_empty_partition_is_served(cluster):
    """Before any produce, the leader answers ListOffsets with 0 and kcat
    reads an empty partition to its end without errors."""
    admin = create_topic(cluster.bootstrap)
    leader = wait_for_leaders(admin)[0]
    with connect(cluster.kafka_addr(leader)) as s:
        assert served_list_offsets(s)[:2] == (0, 0)
        assert list_offsets_v4(s, 0, -1, timestamp=-2)[:2] == (0, 0)  # earliest
    out = subprocess.run(
        ["kcat", "-C", "-b", cluster.bootstrap, "-t", TOPIC, "-p", "0", "-o", "beginning", "-e"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
