"""Bad input from raw sockets: oversize, negative and malformed frames,
unknown API keys and versions, and a record batch with a bad CRC. Each
gets a Kafka error or a closed connection; the broker keeps serving
everyone else."""

import socket
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
