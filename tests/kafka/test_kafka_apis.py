"""The Kafka APIs clients reach for after groups, with real clients:
auto topic creation on first produce (kafkajs, aiokafka), ListOffsets by
timestamp (kafka-python, aiokafka, kafkajs; max timestamp with
confluent-kafka), OffsetForLeaderEpoch after a leader change (leader epochs
are Raft terms; batches carry the epoch they were appended in),
DescribeConfigs / IncrementalAlterConfigs / AlterConfigs round trips,
CreatePartitions (new partitions get leaders and producers use them),
DescribeCluster and the admin group APIs, and transactions refused with a
clear error in kafkajs, aiokafka and confluent-kafka."""

import asyncio
import json
import socket
import struct
import subprocess
import time

import kafka
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic,
    OffsetSpec,
)
from groups import HERE, Member, create_topic, env_ok, produce, wait_consumed

T0 = 1_700_000_000_000


def kafkajs(*args, timeout=60):
    if why := env_ok("kafkajs"):
        pytest.fail(why)
    r = subprocess.run(["node", str(HERE / "js" / "apis.js"), *args], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def topic_partitions(admin, topic):
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    return {} if md is None or md.error else {p: m.leader for p, m in md.partitions.items()}


def test_first_produce_creates_the_topic_kafkajs_and_aiokafka(cluster):
    from aiokafka import AIOKafkaProducer

    sent = kafkajs("autocreate", cluster.bootstrap, "auto-js")
    assert sent["offset"] == 0, sent
    print(f"kafkajs: first produce to a new topic answered in {sent['ms']} ms")

    async def aio():
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, request_timeout_ms=20000)
        await p.start()
        try:
            start = time.monotonic()
            meta = await asyncio.wait_for(p.send_and_wait("auto-aio", b"first"), 20)
            return meta, time.monotonic() - start
        finally:
            await p.stop()

    meta, took = asyncio.run(aio())
    assert (meta.topic, meta.offset) == ("auto-aio", 0)
    print(f"aiokafka: first produce to a new topic answered in {took:.2f} s")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for topic in ["auto-js", "auto-aio"]:
        # num.partitions = 1, replication min(3, live nodes).
        md = admin.list_topics(topic, timeout=10).topics[topic]
        assert len(md.partitions) == 1
        assert len(md.partitions[0].replicas) == 3


def test_auto_creation_off_leaves_unknown_topics_unknown():
    from conftest import Cluster

    c = Cluster(kafka={"auto_create_topics_enable": "false"})
    try:
        p = Producer({"bootstrap.servers": c.bootstrap, "message.timeout.ms": 3000})
        errors = []
        p.produce("never-created", value=b"x", on_delivery=lambda e, m: errors.append(e))
        p.flush(10)
        assert errors and errors[0] is not None
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        assert "never-created" not in admin.list_topics(timeout=10).topics
    finally:
        c.stop()


def timed_batch(bootstrap, topic, n=10):
    """n messages to partition 0 at T0, T0 + 1 s, ..."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=f"m{i}", partition=0, timestamp=T0 + i * 1000)
    assert p.flush(30) == 0


def test_offsets_by_timestamp_with_every_client(cluster):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioTP

    topic = "timed"
    admin = create_topic(cluster.bootstrap, topic, partitions=1)
    timed_batch(cluster.bootstrap, topic)
    target = T0 + 2500  # first record at or after: offset 3 (T0 + 3 s)

    c = kafka.KafkaConsumer(bootstrap_servers=cluster.bootstrap.split(","))
    tp = kafka.TopicPartition(topic, 0)
    found = c.offsets_for_times({tp: target})[tp]
    assert (found.offset, found.timestamp) == (3, T0 + 3000)
    assert c.offsets_for_times({tp: T0 + 99_000})[tp] is None, "every record is older"
    c.close()

    async def aio():
        consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap)
        await consumer.start()
        try:
            return await consumer.offsets_for_times({AioTP(topic, 0): target})
        finally:
            await consumer.stop()

    found = asyncio.run(aio())[AioTP(topic, 0)]
    assert (found.offset, found.timestamp) == (3, T0 + 3000)

    assert kafkajs("by-time", cluster.bootstrap, topic, str(target)) == [
        {"partition": 0, "offset": 3}
    ]
    # Max timestamp (-3), ListOffsets v7+, through librdkafka's admin.
    result = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()})
    info = result[TopicPartition(topic, 0)].result(20)
    assert (info.offset, info.timestamp) == (9, T0 + 9000)


def offset_for_leader_epoch(addr, topic, partition, epoch):
    """A raw OffsetForLeaderEpoch v2: (error, leader epoch, end offset)."""
    name = topic.encode()
    body = (struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
            + struct.pack(">i", 1) + struct.pack(">iii", partition, -1, epoch))
    header = struct.pack(">hhih", 23, 2, 99, 4) + b"test"
    frame = header + body
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv(s, 4))[0]
        data = recv(s, size)
    # correlation, throttle, topics(1), name, partitions(1), then the answer.
    at = 4 + 4 + 4
    at += 2 + struct.unpack(">h", data[at:at + 2])[0]
    at += 4
    error, _p, leader_epoch, end = struct.unpack(">hiiq", data[at:at + 18])
    return error, leader_epoch, end


def recv(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def leader_and_epochs(bootstrap, topic, n):
    """The partition's messages as read back: their batches' leader epochs."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "epochs", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    epochs = []
    deadline = time.monotonic() + 30
    while len(epochs) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            epochs.append(m.leader_epoch())
    c.close()
    return epochs


def test_offset_for_leader_epoch_after_a_leader_change(cluster):
    topic = "epochs"
    admin = create_topic(cluster.bootstrap, topic, partitions=1)
    produce(cluster.bootstrap, topic, [f"a{i}" for i in range(10)])
    first_epoch = leader_and_epochs(cluster.bootstrap, topic, 10)
    assert len(set(first_epoch)) == 1 and first_epoch[0] >= 1, first_epoch
    e1 = first_epoch[0]
    old_leader = topic_partitions(admin, topic)[0]
    cluster.kill(old_leader)
    deadline = time.monotonic() + 30
    while topic_partitions(admin, topic).get(0) in (None, -1, old_leader):
        assert time.monotonic() < deadline, "no new leader"
        time.sleep(0.2)
    new_leader = topic_partitions(admin, topic)[0]
    produce(cluster.bootstrap, topic, [f"b{i}" for i in range(5)])
    epochs = leader_and_epochs(cluster.bootstrap, topic, 15)
    e2 = epochs[-1]
    assert epochs[:10] == [e1] * 10 and epochs[10:] == [e2] * 5 and e2 > e1, epochs
    addr = cluster.kafka_addr(new_leader)
    # Epoch e1 ended where e2's records begin; the current epoch at the log end.
    assert offset_for_leader_epoch(addr, topic, 0, e1) == (0, e1, 10)
    assert offset_for_leader_epoch(addr, topic, 0, e2) == (0, e2, 15)
    # An epoch between them (an election without records) answers e1's end.
    if e2 - e1 > 1:
        assert offset_for_leader_epoch(addr, topic, 0, e2 - 1) == (0, e1, 10)
    assert offset_for_leader_epoch(addr, topic, 0, e2 + 5) == (0, -1, -1), "unknown epoch"
    # A follower does not answer.
    follower = next(n for n in cluster.procs if n != new_leader)
    assert offset_for_leader_epoch(cluster.kafka_addr(follower), topic, 0, e1)[0] == 6


def describe(admin, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([res])[res].result(20)


def test_topic_configs_round_trip_and_apply(cluster):
    topic = "configured"
    admin = create_topic(cluster.bootstrap, topic, partitions=1)
    entry = describe(admin, topic)["max.message.bytes"]
    assert entry.value == "1048588" and entry.is_default
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2048", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(20)
    entry = describe(admin, topic)["max.message.bytes"]
    assert entry.value == "2048" and not entry.is_default
    # It applies: a 4 KiB message is now too large.
    p = Producer({"bootstrap.servers": cluster.bootstrap, "message.timeout.ms": 10000})
    errors = []
    p.produce(topic, value=b"x" * 4096, on_delivery=lambda e, m: errors.append(e))
    p.flush(20)
    assert errors[0] is not None and errors[0].name() == "MSG_SIZE_TOO_LARGE", errors
    # Unknown keys and bad values are refused, naming the problem.
    for key, value in [("cleanup.policy", "compact"), ("max.message.bytes", "lots")]:
        bad = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException) as e:
            admin.incremental_alter_configs([bad])[bad].result(20)
        assert e.value.args[0].name() == "INVALID_CONFIG", e.value
        assert key in str(e.value)
    # AlterConfigs (kafka-python, the non-incremental API) sets the whole set.
    kadmin = kafka.KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","))
    kadmin.alter_configs(
        [kafka.admin.ConfigResource("TOPIC", topic, configs={"max.message.bytes": "4096"})],
        incremental=False,
    )
    kadmin.close()
    assert describe(admin, topic)["max.message.bytes"].value == "4096"
    # DELETE returns a config to its default.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([res])[res].result(20)
    assert describe(admin, topic)["max.message.bytes"].is_default
    # Broker settings are read-only.
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    found = admin.describe_configs([broker])[broker].result(20)
    assert found["auto.create.topics.enable"].value == "true"
    assert found["auto.create.topics.enable"].is_read_only


def test_create_partitions_grows_a_topic_and_producers_use_them(cluster):
    topic = "growing"
    admin = create_topic(cluster.bootstrap, topic, partitions=2)
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:
        leaders = topic_partitions(admin, topic)
        if len(leaders) == 5 and all(l > 0 for l in leaders.values()):
            break
        assert time.monotonic() < deadline, f"new partitions without leaders: {leaders}"
        time.sleep(0.2)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                  "partitioner": "murmur2_random"})
    landed = []
    for i in range(200):
        p.produce(topic, key=f"k{i}", value=f"v{i}",
                  on_delivery=lambda e, m: landed.append(None if e else m.partition()))
    assert p.flush(30) == 0
    assert None not in landed
    assert {2, 3, 4} <= set(landed), f"new partitions unused: {sorted(set(landed))}"
    # Shrinking, or the same count, is refused.
    with pytest.raises(KafkaException) as e:
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(20)
    assert e.value.args[0].name() == "INVALID_PARTITIONS"


def test_cluster_and_group_admin_apis(cluster):
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = create_topic(cluster.bootstrap, "admin-t", partitions=3)
    d = admin.describe_cluster(request_timeout=20).result(30)
    assert d.cluster_id == "leaderhook" and len(d.nodes) == 3 and d.controller is not None
    produce(cluster.bootstrap, "admin-t", [f"v{i}" for i in range(30)])
    member = Member("confluent", cluster.bootstrap, "admin-t", "admin-group")
    try:
        wait_consumed([member], [f"v{i}" for i in range(30)], 60, "admin-group")
        listed = admin.list_consumer_groups(request_timeout=20).result(30)
        assert "admin-group" in {g.group_id for g in listed.valid}
        desc = admin.describe_consumer_groups(["admin-group"])["admin-group"].result(20)
        assert str(desc.state).endswith("STABLE") and len(desc.members) == 1
        assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == {0, 1, 2}
        # A group with members is not deleted.
        with pytest.raises(KafkaException) as e:
            admin.delete_consumer_groups(["admin-group"])["admin-group"].result(20)
        assert e.value.args[0].name() == "NON_EMPTY_GROUP"
    finally:
        member.leave()
    deadline = time.monotonic() + 30
    while True:
        desc = admin.describe_consumer_groups(["admin-group"])["admin-group"].result(20)
        if str(desc.state).endswith("EMPTY"):
            break
        assert time.monotonic() < deadline, desc.state
        time.sleep(0.3)
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("admin-group")])["admin-group"].result(20)
    assert sum(tp.offset for tp in offsets.topic_partitions) == 30
    admin.delete_consumer_groups(["admin-group"])["admin-group"].result(20)
    listed = admin.list_consumer_groups(request_timeout=20).result(30)
    assert "admin-group" not in {g.group_id for g in listed.valid}
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups(["admin-group"])["admin-group"].result(20)
    assert e.value.args[0].name() == "GROUP_ID_NOT_FOUND"


def test_transactions_are_refused_clearly(cluster):
    from aiokafka import AIOKafkaProducer

    create_topic(cluster.bootstrap, "txn", partitions=1)
    result = kafkajs("txn", cluster.bootstrap, "txn")
    assert result["ok"] is False, result
    assert result["type"] == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", result
    print(f"kafkajs: {result['name']}: {result['message']}")

    async def aio():
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, transactional_id="tx-aio")
        try:
            await asyncio.wait_for(p.start(), 30)
        finally:
            await p.stop()

    with pytest.raises(Exception) as e:
        asyncio.run(aio())
    print(f"aiokafka: {type(e.value).__name__}: {e.value}")
    assert "TransactionalIdAuthorizationFailed" in type(e.value).__name__, repr(e.value)

    p = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": "tx-rdkafka"})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(30)
    print(f"confluent-kafka: {e.value}")
    assert e.value.args[0].name() == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", e.value


def test_the_offsets_topic_is_the_brokers_own(cluster):
    """Clients cannot write to, delete or create the offsets topic; a group
    deleted and created again under the same name starts afresh."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = create_topic(cluster.bootstrap, "owned", partitions=1)
    produce(cluster.bootstrap, "owned", [f"v{i}" for i in range(5)])
    first = Member("confluent", cluster.bootstrap, "owned", "reused")
    wait_consumed([first], [f"v{i}" for i in range(5)], 60, "first life")
    first.leave()
    md = admin.list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"]
    assert md.error is None and len(md.partitions) == 10
    # Produce into it: refused, the coordinator untouched.
    p = Producer({"bootstrap.servers": cluster.bootstrap, "message.timeout.ms": 5000})
    errors = []
    p.produce("__consumer_offsets", value=b"\x01garbage", partition=0,
              on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    assert errors and errors[0] is not None, "a client wrote into the offsets topic"
    for call in (lambda: admin.delete_topics(["__consumer_offsets"])["__consumer_offsets"],
                 lambda: admin.create_topics([NewTopic("__consumer_offsets", 1, 1)])[
                     "__consumer_offsets"]):
        with pytest.raises(KafkaException):
            call().result(20)
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("reused")])["reused"].result(20)
    assert [tp.offset for tp in offsets.topic_partitions] == [5]
    # The same name after a deletion: no offsets, consumed from the start.
    deadline = time.monotonic() + 30
    while True:
        try:
            admin.delete_consumer_groups(["reused"])["reused"].result(20)
            break
        except KafkaException:  # still leaving
            assert time.monotonic() < deadline
            time.sleep(0.5)
    second = Member("confluent", cluster.bootstrap, "owned", "reused")
    try:
        wait_consumed([second], [f"v{i}" for i in range(5)], 60, "second life")
    finally:
        second.kill()
