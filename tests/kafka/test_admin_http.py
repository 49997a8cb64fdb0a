"""The admin API over HTTP (`POST /v1/admin` on each node's `metrics_listen`),
driven with nothing but the standard library, as an operator's script would:
signed requests answered with HTTP statuses as typed answers; unsigned,
badly signed, stale and replayed requests refused (401) while the node keeps
serving; and `leaderhook status` listing every partition a node hosts before
any of them has elected a leader.

Needs only pytest (no Kafka client): the signing below is the README's
example ("Operating plugins")."""

import hashlib
import hmac
import json
import re
import subprocess
import time
import urllib.error
import urllib.request

from conftest import BIN, wait_until


def sign(secret, body, date=None):
    """The two headers of a signed admin request."""
    date = date or f"{time.time():.6f}"
    key = hmac.new(secret.encode(), b"leaderhook admin http v1", hashlib.sha256).digest()
    signature = hmac.new(key, date.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    return {"X-Leaderhook-Date": date, "X-Leaderhook-Signature": signature}


def post(cluster, node, body, headers=None, method="POST", timeout=40):
    """(HTTP status, answer as JSON or text, response headers) of one request."""
    url = f"http://{cluster.configs[node]['metrics_listen']}/v1/admin"
    request = urllib.request.Request(url, data=body if method == "POST" else None,
                                     headers={"Content-Type": "application/json", **(headers or {})},
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text, got = response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as e:
        status, text, got = e.code, e.read().decode(), e.headers
    try:
        return status, json.loads(text), got
    except ValueError:
        return status, text, got


def admin(cluster, node, request, **kwargs):
    """A signed request: (status, answer, headers)."""
    body = json.dumps(request).encode()
    secret = cluster.configs[node]["security"]["secret"]
    return post(cluster, node, body, sign(secret, body), **kwargs)


def test_the_http_admin_api_answers_with_statuses_and_refuses_unsigned_requests(cluster):
    secret = cluster.configs[1]["security"]["secret"]
    status = json.dumps({"op": "status"}).encode()

    # A signed status: 200 and the node's status JSON.
    code, answer, _ = admin(cluster, 1, {"op": "status"})
    assert code == 200, answer
    assert answer["ok"]["node"] == 1, answer

    # Refused, each with a sentence naming what was wrong.
    code, answer, headers = post(cluster, 1, status)
    assert (code, answer["kind"]) == (401, "auth"), answer
    assert "x-leaderhook-date, x-leaderhook-signature" in answer["error"], answer
    assert headers["WWW-Authenticate"].startswith("Leaderhook-HMAC-SHA256"), headers
    code, answer, _ = post(cluster, 1, status, sign("another secret of this length, not ours", status))
    assert (code, answer["kind"]) == (401, "auth"), answer
    assert "wrong signature" in answer["error"], answer
    # Signed for another body than the one sent.
    code, answer, _ = post(cluster, 1, json.dumps({"op": "plugins"}).encode(), sign(secret, status))
    assert code == 401 and "wrong signature" in answer["error"], answer
    stale = f"{time.time() - 300:.0f}"
    code, answer, _ = post(cluster, 1, status, sign(secret, status, date=stale))
    assert code == 401 and "behind this node's clock" in answer["error"], answer
    code, answer, _ = post(cluster, 1, status, sign(secret, status, date="yesterday"))
    assert code == 401 and "unix seconds" in answer["error"], answer
    # The same signed request twice: the second is a replay.
    headers = sign(secret, status)
    code, answer, _ = post(cluster, 1, status, headers)
    assert code == 200, answer
    code, answer, _ = post(cluster, 1, status, headers)
    assert code == 401 and "replayed" in answer["error"], answer

    # The node still serves, and counted the refusals.
    code, answer, _ = admin(cluster, 1, {"op": "status"})
    assert code == 200, answer
    assert answer["ok"]["admin"]["http_refused_unauthenticated"] == 6, answer["ok"]["admin"]

    # Typed answers.
    code, answer, _ = admin(cluster, 1, {"op": "no-such-op"})
    assert (code, answer["kind"]) == (400, "bad-request"), answer
    code, answer, _ = post(cluster, 1, b"{not json", sign(secret, b"{not json"))
    assert (code, answer["kind"]) == (400, "bad-request"), answer
    code, answer, _ = admin(cluster, 1, {"op": "create-topic", "name": "bad/name", "partitions": 1,
                                         "replication": 1})
    assert (code, answer["kind"]) == (400, "bad-request"), answer
    code, answer, _ = admin(cluster, 1, {"op": "delete-topic", "name": "no-such-topic"})
    assert (code, answer["kind"]) == (404, "unknown"), answer
    assert "no-such-topic" in answer["error"], answer
    code, answer, _ = admin(cluster, 1, {"op": "plugin-diff", "plugin": "nobody"})
    assert (code, answer["kind"]) == (404, "unknown"), answer
    # Understood, refused by the state: the plugin is not a shadow.
    code, answer, _ = admin(cluster, 1, {"op": "plugin-diff", "plugin": "assign-leader"})
    assert (code, answer["kind"]) == (422, "refused"), answer
    # Test hooks stay off without [testing] fault_injection.
    code, answer, _ = admin(cluster, 1, {"op": "drop-events", "count": 1})
    assert (code, answer["kind"]) == (403, "disabled"), answer
    assert "fault_injection" in answer["error"], answer
    create = {"op": "create-topic", "name": "over-http", "partitions": 2, "replication": 3}
    code, answer = wait_until("a topic created over HTTP",
                              lambda: (lambda r: r[:2] if r[0] == 200 else None)(admin(cluster, 1, create)),
                              timeout=60, interval=1)
    assert len(answer["ok"]["groups"]) == 2, answer
    code, answer, _ = admin(cluster, 2, create)
    assert (code, answer["kind"]) == (409, "exists"), answer
    # Bounded body (checked before the signature), only POST.
    big = b" " * (64 * 1024 + 1)
    code, answer, _ = post(cluster, 1, big, sign(secret, big))
    assert (code, answer["kind"]) == (413, "bad-request"), answer
    code, _, _ = post(cluster, 1, None, method="GET")
    assert code == 405

    # Quorum lost: a topic cannot be created; 503, worth retrying. The
    # request waits out the commit timeout (10 s), past the listener's idle
    # connection lifetime (10 s): an authenticated request keeps its
    # connection until it is answered.
    cluster.kill(2)
    cluster.kill(3)
    started = time.monotonic()
    code, answer, headers = admin(cluster, 1, {"op": "create-topic", "name": "no-quorum",
                                               "partitions": 1, "replication": 1})
    assert (code, answer["kind"]) == (503, "unavailable"), answer
    assert headers["Retry-After"] == "1", headers
    print(f"503 after {time.monotonic() - started:.1f}s: {answer['error']}")
    code, answer, _ = admin(cluster, 1, {"op": "status"})
    assert code == 200, answer


def status_json(cluster, node):
    """`leaderhook status --json` of one node, through the CLI (the admin port)."""
    out = subprocess.run(
        [BIN, "status", "--json", "--admin", cluster.configs[node]["admin_listen"],
         "--dir", str(cluster.dir)],
        capture_output=True, text=True, timeout=30,
    )
    line = out.stdout.strip()
    return json.loads(line) if line.startswith("{") else None


def test_status_lists_partitions_that_never_elected_a_leader(cluster):
    subprocess.run([BIN, "topics", "create", "waiting", "--partitions", "4", "--replication", "3",
                    "--dir", str(cluster.dir)], check=True, capture_output=True, timeout=60)
    partitions = {f"waiting-{i}" for i in range(4)}

    def elected():
        status = status_json(cluster, 1)
        replicas = {r["partition"]: r for r in (status or {}).get("replicas", [])}
        return partitions <= replicas.keys() and all(
            replicas[p]["raft_leader"] is not None for p in partitions)
    wait_until("node 1 to see the topic's leaders", elected, timeout=60, interval=0.5)

    # Node 1 alone, with an election timeout it will not reach: none of its
    # replicas has a leader, or takes part in an election, after this start.
    cluster.stop()
    config = cluster.dir / "node1.toml"
    text, found = re.subn(r"(?m)^election_ticks = .*$", "election_ticks = 100000",
                          config.read_text())
    assert found == 1, text
    config.write_text(text)
    cluster.start(1)
    cluster.wait_port(cluster.configs[1]["admin_listen"])

    def listed():
        status = status_json(cluster, 1)
        replicas = [r for r in (status or {}).get("replicas", [])
                    if r["partition"].startswith("waiting-")]
        return replicas if {r["partition"] for r in replicas} == partitions else None
    replicas = wait_until("node 1's status to list every partition it hosts", listed, timeout=30,
                          interval=0.5)
    for r in replicas:
        assert r["raft_leader"] is None, r
        assert r["role"] != "Leader" and not r["serving"], r
    # Still so a while later: nothing elected meanwhile.
    time.sleep(3)
    again = listed()
    assert again and all(r["raft_leader"] is None for r in again), again
