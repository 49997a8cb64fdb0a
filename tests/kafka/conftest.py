"""A loopback leaderhook cluster for the Kafka client tests.

The binary is $LEADERHOOK_BIN or target/debug/leaderhook (built by
`cargo test`). Every broker process started here is stopped at teardown.
"""

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("LEADERHOOK_BIN", str(ROOT / "target" / "debug" / "leaderhook"))


def wait_until(what, condition, timeout, interval=0.1):
    """Polls `condition` until it returns something truthy and returns that;
    fails naming `what` (and the last value seen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}: last {value!r}"
        time.sleep(interval)


def cli(cluster, *args):
    """Runs the leaderhook CLI against `cluster`; returns its stdout."""
    return subprocess.run(
        [BIN, *args, "--dir", str(cluster.dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def raft_leader(cluster, partition):
    """The node whose replica of `partition` (e.g. "orders-0") says it is
    Raft leader, at the highest term reported by any node; None if no live
    node leads it. Raft's view, whatever the stored assignment says."""
    best = (None, -1)
    for line in cli(cluster, "status", "--json").splitlines():
        if not line.startswith("{"):
            continue
        status = json.loads(line)
        for replica in status["replicas"]:
            if replica["partition"] == partition and replica["role"] == "Leader":
                if replica["term"] > best[1]:
                    best = (status["node"], replica["term"])
    return best[0]


class Cluster:
    def __init__(self, nodes=3, plugins=True, raft=None, kafka=None, storage=None, groups=None,
                 dispatch=None, transport=None):
        """`raft`: values for keys of the `[raft]` table cluster init writes;
        `storage`: settings for every node's [storage] table;
        `kafka`: settings for every node's [kafka] table (see
        host/src/config.rs KafkaConfig), e.g. {"max_connections": 5};
        `groups`: every node's [groups] table (coordinator::GroupsConfig);
        `dispatch`: every node's [dispatch] table (e.g. the safety net off:
        {"fail_to_default": "false"}); `transport`: every node's [transport]
        table (e.g. {"inbox_bytes": 1048576})."""
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="leaderhook-kafka-"))
        subprocess.run(
            [BIN, "cluster", "init", "--nodes", str(nodes), "--dir", str(self.dir)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.configs = {}
        for n in range(1, nodes + 1):
            path = self.dir / f"node{n}.toml"
            text = path.read_text()
            if not plugins:
                text = text[: text.index("[[plugins]]")]
            for key, value in (raft or {}).items():
                text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
                assert found == 1, f"no [raft] key {key} in {path}"
            for table, settings in (("kafka", kafka), ("storage", storage), ("groups", groups),
                                    ("dispatch", dispatch), ("transport", transport)):
                if settings:
                    text += f"\n[{table}]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
            path.write_text(text)
            self.configs[n] = tomllib.loads(path.read_text())
        self.procs = {}
        for n in self.configs:
            self.start(n)
        for n in self.configs:
            self.wait_port(self.kafka_addr(n))

    def kafka_addr(self, node):
        return self.configs[node]["kafka_listen"]

    @property
    def bootstrap(self):
        return ",".join(self.kafka_addr(n) for n in self.configs)

    def start(self, node):
        log = open(self.dir / f"node{node}.log", "ab")
        self.procs[node] = subprocess.Popen(
            [BIN, "broker", "--config", str(self.dir / f"node{node}.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def pid(self, node):
        return self.procs[node].pid

    def kill(self, node):
        proc = self.procs.pop(node)
        proc.kill()
        proc.wait(timeout=10)

    @staticmethod
    def wait_port(addr, timeout=30):
        host, port = addr.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self):
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def logs(self):
        return "\n".join(
            f"--- node{n}\n" + (self.dir / f"node{n}.log").read_text(errors="replace")[-4000:]
            for n in self.configs
        )


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()
        # Keep the logs of a failed run for inspection; else clean up.
        if os.environ.get("LEADERHOOK_KEEP") is None:
            shutil.rmtree(c.dir, ignore_errors=True)


# The negative controls: with the safety net on, the embedded default plugin
# would take over and keep Metadata following Raft (host/tests/operations.rs
# shows that); these clusters show what happens with no plugin at all.
NO_SAFETY_NET = {"fail_to_default": "false"}


@pytest.fixture
def cluster_without_safety_net():
    c = Cluster(dispatch=NO_SAFETY_NET)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.dir, ignore_errors=True)


@pytest.fixture
def cluster_without_plugins():
    c = Cluster(plugins=False, dispatch=NO_SAFETY_NET)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(c.dir, ignore_errors=True)
