"""One consumer-group member, for the group tests: consumes TOPIC in GROUP
with the named Python client, prints one JSON line per message
({"p": partition, "o": offset, "v": value}) and commits after printing
(at least once, by committed offsets). SIGTERM closes it gracefully (the
client leaves the group); kill -9 does not.

    python3 group_member.py confluent|kafka-python|aiokafka BOOTSTRAP TOPIC GROUP
"""

import asyncio
import json
import signal
import sys

SESSION_MS = 6000
HEARTBEAT_MS = 1000

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def emit(partition, offset, value):
    print(json.dumps({"p": partition, "o": offset, "v": value}), flush=True)


def confluent(bootstrap, topic, group):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
        }
    )
    c.subscribe([topic])
    while not stop:
        msgs = c.consume(num_messages=100, timeout=0.3)
        good = [m for m in msgs if m.error() is None]
        for m in good:
            emit(m.partition(), m.offset(), m.value().decode())
        if good:
            try:
                c.commit(asynchronous=False)
            except Exception as e:  # noqa: BLE001 - a rebalance: redelivered later
                print(f"commit failed: {e}", file=sys.stderr, flush=True)
    c.close()


def kafka_python(bootstrap, topic, group):
    import kafka

    c = kafka.KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )
    while not stop:
        batches = c.poll(timeout_ms=300)
        for tp, msgs in batches.items():
            for m in msgs:
                emit(tp.partition, m.offset, m.value.decode())
        if batches:
            try:
                c.commit()
            except Exception as e:  # noqa: BLE001
                print(f"commit failed: {e}", file=sys.stderr, flush=True)
    c.close()


async def aiokafka_member(bootstrap, topic, group):
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )
    await c.start()
    try:
        while not stop:
            batches = await c.getmany(timeout_ms=300)
            for tp, msgs in batches.items():
                for m in msgs:
                    emit(tp.partition, m.offset, m.value.decode())
            if batches:
                try:
                    await c.commit()
                except Exception as e:  # noqa: BLE001
                    print(f"commit failed: {e}", file=sys.stderr, flush=True)
    finally:
        await c.stop()


if __name__ == "__main__":
    client, bootstrap, topic, group = sys.argv[1:5]
    if client == "confluent":
        confluent(bootstrap, topic, group)
    elif client == "kafka-python":
        kafka_python(bootstrap, topic, group)
    elif client == "aiokafka":
        asyncio.run(aiokafka_member(bootstrap, topic, group))
    else:
        sys.exit(f"unknown client {client}")
