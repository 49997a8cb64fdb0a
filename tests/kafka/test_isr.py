"""ISR from Raft progress: Metadata's in-sync replicas are what each
partition's leader sees in its Raft group. A killed node drops out of
every ISR; restarted, it catches up and is back in.

"Everyone in sync" at the start is also what topic creation writes, so
only the shrinking and the regrowing show the leaders' writes reaching
Metadata. Whether a follower that is back but behind waits outside until
it has caught up is the ISR rule's own unit test (host/src/raft/node.rs,
`in_sync`): from outside, nothing shows how far a follower's log is."""

from confluent_kafka.admin import AdminClient

from conftest import wait_until
from test_clients import PARTITIONS, TOPIC, create_topic


def isr_view(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
    return {p: (m.leader, sorted(m.isrs)) for p, m in topic.partitions.items()}


def wait_for(what, bootstrap, condition, timeout=40):
    def settled():
        view = isr_view(bootstrap)
        ok = len(view) == PARTITIONS and all(condition(l, isr) for l, isr in view.values())
        return view if ok else None

    return wait_until(what, settled, timeout, interval=0.3)


def test_isr_follows_raft_progress(cluster):
    create_topic(cluster.bootstrap)
    everyone = sorted(cluster.configs)
    wait_for("leaders, everyone in sync", cluster.bootstrap,
             lambda l, isr: l > 0 and isr == everyone)

    victim = 3
    cluster.kill(victim)
    survivors = [n for n in everyone if n != victim]
    survivors_bootstrap = ",".join(cluster.kafka_addr(n) for n in survivors)
    wait_for("the killed node to leave every ISR", survivors_bootstrap,
             lambda l, isr: l in survivors and isr == survivors)

    cluster.start(victim)
    cluster.wait_port(cluster.kafka_addr(victim))
    wait_for("the restarted node to rejoin every ISR", cluster.bootstrap,
             lambda l, isr: l > 0 and isr == everyone)
