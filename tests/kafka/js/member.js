// One kafkajs consumer-group member for tests/kafka/test_groups.py:
// consumer.run() over TOPIC in GROUP, one JSON line per message
// ({"p", "o", "v"}), offsets committed after each batch (kafkajs's
// default). SIGTERM disconnects (the member leaves the group).
//
//   node member.js BOOTSTRAP TOPIC GROUP
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, group] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'kafkajs-member',
  brokers: bootstrap.split(','),
  logLevel: logLevel.WARN,
  retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2000 },
});
const consumer = kafka.consumer({
  groupId: group,
  sessionTimeout: 6000,
  heartbeatInterval: 1000,
  rebalanceTimeout: 20000,
});

async function main() {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      process.stdout.write(
        JSON.stringify({ p: partition, o: Number(message.offset), v: message.value.toString() }) + '\n',
      );
    },
  });
}

consumer.on(consumer.events.CRASH, (e) => {
  process.stderr.write(`crash: ${e.payload.error}\n`);
});
process.on('SIGTERM', async () => {
  await consumer.disconnect();
  process.exit(0);
});
main().catch((e) => {
  process.stderr.write(`failed: ${e}\n`);
  process.exit(1);
});
