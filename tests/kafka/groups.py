"""Helpers for the consumer-group tests: group members as processes of
each real client (group_member.py, js/member.js, kcat -G), whose consumed
messages are collected as they print them."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = pathlib.Path(__file__).resolve().parent
SESSION_S = 6  # every member's session timeout (the broker's minimum)
CLIENTS = ["confluent", "kafka-python", "aiokafka", "kafkajs", "kcat"]


class Member:
    """A consumer-group member process and what it has consumed:
    [(monotonic time, partition, offset, value)]."""

    def __init__(self, client, bootstrap, topic, group):
        self.client = client
        if client == "kafkajs":
            cmd = ["node", str(HERE / "js" / "member.js"), bootstrap, topic, group]
        elif client == "kcat":
            cmd = [
                "kcat", "-q", "-u", "-b", bootstrap, "-G", group,
                "-X", "auto.offset.reset=earliest",
                "-X", f"session.timeout.ms={SESSION_S * 1000}",
                "-X", "heartbeat.interval.ms=1000",
                "-X", "auto.commit.interval.ms=300",
                "-f", '{"p": %p, "o": %o, "v": "%s"}\\n',
                topic,
            ]
        else:
            cmd = [sys.executable, str(HERE / "group_member.py"), client, bootstrap, topic, group]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.consumed = []
        self.errors = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.consumed.append((time.monotonic(), m["p"], m["o"], m["v"]))

    def _read_errors(self):
        for line in self.proc.stderr:
            self.errors.append(line.rstrip())

    def values(self):
        with self.lock:
            return [v for _, _, _, v in self.consumed]

    def leave(self, timeout=20):
        """Graceful stop: the client leaves the group."""
        self.proc.send_signal(signal.SIGINT if self.client == "kcat" else signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def alive(self):
        return self.proc.poll() is None


def create_topic(bootstrap, topic, partitions=3):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 3)], operation_timeout=20)[topic].result(40)
    return admin


def produce(bootstrap, topic, values):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 60000})
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, key=str(i), value=v,
                  on_delivery=lambda err, _m: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0
    assert errors == [], errors
    return p


def consumed(members):
    out = []
    for m in members:
        out.extend(m.values())
    return out


def wait_consumed(members, values, timeout, what=""):
    """Waits until every value was consumed by some member; returns the
    time it took."""
    start = time.monotonic()
    want = set(values)
    while True:
        missing = want - set(consumed(members))
        if not missing:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            errors = {m.client: m.errors[-5:] for m in members}
            raise AssertionError(
                f"{what}: {len(missing)} of {len(want)} not consumed within {timeout}s "
                f"(e.g. {sorted(missing)[:5]}); member errors: {errors}"
            )
        time.sleep(0.1)


def committed(bootstrap, topic, group, partitions=3):
    """The group's committed offsets, as a fresh client fetches them."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {
            tp.partition: tp.offset
            for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        }
    finally:
        c.close()


def end_offsets(bootstrap, topic, partitions=3):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets-probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                for p in range(partitions)}
    finally:
        c.close()


def wait_committed(bootstrap, topic, group, timeout=30):
    """Waits until the group's committed offsets reach the end of every
    partition: no message skipped, by committed offsets."""
    ends = end_offsets(bootstrap, topic)
    deadline = time.monotonic() + timeout
    while True:
        found = committed(bootstrap, topic, group)
        if found == ends:
            return found
        assert time.monotonic() < deadline, f"committed {found}, log ends {ends}"
        time.sleep(0.5)


def wait_assigned(bootstrap, group, members, timeout=60):
    """Waits until the group is Stable with `members` members, each holding
    at least one partition, as DescribeGroups tells it; returns
    {member id: sorted partitions}. Members start as separate processes, so
    one may join a generation later than another: producing before this
    lets the first member consume everything alone."""
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            d = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
            seen = (d.state, {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
                              for m in d.members})
            if (d.state == ConsumerGroupState.STABLE and len(seen[1]) == members
                    and all(seen[1].values())):
                return seen[1]
        except Exception as e:  # noqa: BLE001 - not coordinated yet
            seen = repr(e)
        assert time.monotonic() < deadline, (
            f"group {group}: not Stable with {members} members each assigned "
            f"within {timeout}s; last seen {seen}")
        time.sleep(0.5)


def have_node_deps():
    return (HERE / "js" / "node_modules" / "kafkajs").exists()


def env_ok(client):
    """Every client of the test set must be there: a missing one fails its
    tests (scripts/test.sh installs them all), never skips them."""
    if client == "kafkajs" and not have_node_deps():
        return "kafkajs not installed (npm install --prefix tests/kafka/js; scripts/test.sh does)"
    if client == "kcat" and subprocess.run(["which", "kcat"], capture_output=True).returncode:
        return "kcat not installed (scripts/test.sh installs it)"
    return None


__all__ = [
    "CLIENTS", "Member", "SESSION_S", "committed", "consumed", "create_topic", "end_offsets",
    "env_ok", "produce", "wait_assigned", "wait_committed", "wait_consumed", "os",
]
