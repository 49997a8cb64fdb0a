// kafkajs calls for tests/kafka/test_kafka_apis.py; prints one JSON line.
//
//   node apis.js autocreate BOOTSTRAP TOPIC     first produce to a new topic
//   node apis.js by-time BOOTSTRAP TOPIC TS     offsets at or after TS
//   node apis.js txn BOOTSTRAP TOPIC            a transactional producer
const { Kafka, logLevel } = require('kafkajs');

const [command, bootstrap, topic, arg] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'kafkajs-apis',
  brokers: bootstrap.split(','),
  logLevel: logLevel.NOTHING,
  retry: { retries: 5 },
});
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');

async function autocreate() {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const started = Date.now();
  const [sent] = await producer.send({ topic, acks: -1, messages: [{ value: 'first' }] });
  await producer.disconnect();
  out({ partition: sent.partition, offset: Number(sent.baseOffset), ms: Date.now() - started });
}

async function byTime() {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, Number(arg));
  await admin.disconnect();
  out(offsets.map((o) => ({ partition: o.partition, offset: Number(o.offset) })));
}

async function txn() {
  const producer = kafka.producer({ transactionalId: 'tx-1', maxInFlightRequests: 1, idempotent: true });
  try {
    await producer.connect();
    const t = await producer.transaction();
    await t.send({ topic, messages: [{ value: 'x' }] });
    await t.commit();
    out({ ok: true });
  } catch (e) {
    out({ ok: false, name: e.name, type: e.type || null, message: e.message });
  } finally {
    await producer.disconnect().catch(() => {});
  }
}

const commands = { autocreate, 'by-time': byTime, txn };
commands[command]().catch((e) => {
  out({ failed: `${e.name}: ${e.message}` });
  process.exit(1);
});
