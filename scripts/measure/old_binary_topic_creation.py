"""The topic_creation bench's figures against an OLD broker binary, through
that binary's own CLI (host/benches/topic_creation.rs speaks today's
authenticated admin protocol, which binaries from before issue 9 do not):

    python3 scripts/measure/old_binary_topic_creation.py OLD_BINARY [PARTITIONS]

First leaders: a PARTITIONS-partition topic created, time until every
partition has a Raft leader that every replica's assignment names (polled
through `status --json`, about 0.2 s per poll). No stalls: another topic of
PARTITIONS created; elections in the existing groups = the sum of their term
increases. Used for issue 9's before figure (binary of a7434b6)."""
import json, pathlib, shutil, subprocess, sys, tempfile, time
B = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
d = pathlib.Path(tempfile.mkdtemp(prefix="old-binary-")); shutil.rmtree(d, ignore_errors=True)
subprocess.run([B, "cluster", "init", "--dir", str(d)], check=True, capture_output=True)
procs = [subprocess.Popen([B, "broker", "--config", str(d / f"node{n}.toml")],
                          stdout=open(d / f"node{n}.log", "w"), stderr=subprocess.STDOUT) for n in (1, 2, 3)]
def status():
    out = subprocess.run([B, "status", "--json", "--dir", str(d)], capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip().startswith("{")]
def converged(expected):
    leader, term, assigned = {}, {}, {}
    for node in status():
        for r in node["replicas"]:
            p = r["partition"]
            term[p] = max(term.get(p, 0), r["term"])
            if r["role"] == "Leader": leader[p] = node["node"]
            assigned.setdefault(p, []).append(r["assigned_leader"])
    ok = [p for p in term if p in leader and all(a == leader[p] for a in assigned[p])]
    return len(ok) >= expected, term
def wait(expected, timeout=300):
    t0 = time.monotonic()
    while True:
        done, term = converged(expected)
        if done: return term
        assert time.monotonic() - t0 < timeout, "not converged"
        time.sleep(0.2)
try:
    time.sleep(3)
    t1 = time.monotonic()
    subprocess.run([B, "topics", "create", "existing", "--partitions", str(N), "--replication", "3", "--dir", str(d)], check=True, capture_output=True)
    wait(N); print(f"first leaders: {N} partitions led and assigned {1e3*(time.monotonic()-t1):.0f} ms after the create command started"); time.sleep(3)
    before = converged(N)[1]
    t0 = time.monotonic()
    subprocess.run([B, "topics", "create", "added", "--partitions", str(N), "--replication", "3", "--dir", str(d)], check=True, capture_output=True)
    answered = time.monotonic() - t0
    wait(2 * N); led = time.monotonic() - t0
    time.sleep(3)
    after = converged(2 * N)[1]
    elections = sum(max(0, after.get(p, t) - t) for p, t in before.items())
    print(f"before-binary no_stalls existing={N} added={N} elections_in_existing={elections} "
          f"answered_ms={answered*1e3:.0f} all_led_ms={led*1e3:.0f}")
finally:
    for p in procs: p.kill()
    shutil.rmtree(d, ignore_errors=True)
