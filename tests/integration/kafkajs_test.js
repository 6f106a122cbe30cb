// kafkajs 2.2.4 against a real spate: admin create, produce (plain and gzip), offsets,
// and consume back byte-identical and in order per partition. kafkajs consumes only
// through a consumer group, so the consume test runs when the broker serves groups.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { Kafka, CompressionTypes, logLevel } = require('./js/node_modules/kafkajs');

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = server.address().port;
      server.close(() => resolve(port));
    });
  });
}

async function startBroker() {
  const port = await freePort();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spate-kafkajs-'));
  const binary = process.env.SPATE_BIN || 'build/broker/spate';
  const child = spawn(binary, ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--shards', '2'],
                      { stdio: ['ignore', 'inherit', 'inherit'] });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) return { child, port, dataDir };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('spate did not start');
}

async function stopBroker(b) {
  const exited = new Promise((resolve) => b.child.on('exit', (code) => resolve(code)));
  b.child.kill('SIGTERM');
  const code = await exited;
  fs.rmSync(b.dataDir, { recursive: true, force: true });
  return code;
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function testProduceAndListOffsets(kafka) {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'js-orders', numPartitions: 3 }], waitForLeaders: true });
  const topics = await admin.listTopics();
  assert(topics.includes('js-orders'), 'topic listed');
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < 300; i++) messages.push({ key: `k${i}`, value: `v${i}-`.repeat(i % 9 + 1), partition: i % 3 });
  await producer.send({ topic: 'js-orders', messages: messages.slice(0, 150) });
  await producer.send({ topic: 'js-orders', compression: CompressionTypes.GZIP, messages: messages.slice(150) });
  await producer.disconnect();
  const offsets = await admin.fetchTopicOffsets('js-orders');
  const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  assert(total === 300, `300 records stored, offsets say ${total}`);
  for (const p of offsets) assert(Number(p.high) === 100, `partition ${p.partition} has ${p.high}`);
  await admin.disconnect();
  return messages;
}

async function testConsume(kafka, messages) {
  // kafkajs only consumes through a consumer group: skip when the broker does not
  // serve the group APIs (ListGroups fails then).
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.listGroups();
  } catch (e) {
    await admin.disconnect();
    return 'skipped (the broker does not serve consumer groups)';
  }
  await admin.disconnect();
  const consumer = kafka.consumer({ groupId: 'js-group', maxWaitTimeInMs: 100 });
  await consumer.connect();
  const got = [];
  let done;
  const finished = new Promise((r) => { done = r; });
  await consumer.subscribe({ topic: 'js-orders', fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      got.push({ partition, offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() });
      if (got.length === messages.length) done();
    },
  });
  const timer = setTimeout(done, 30000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  assert(got.length === messages.length, `consumed ${got.length} of ${messages.length}`);
  for (const p of [0, 1, 2]) {
    const mine = got.filter((m) => m.partition === p);
    mine.forEach((m, i) => assert(m.offset === i, 'offsets in order'));
    const sent = messages.filter((m) => m.partition === p);
    mine.forEach((m, i) => assert(m.key === sent[i].key && m.value === sent[i].value, 'byte-identical'));
  }
  return 'ok';
}

async function main() {
  const b = await startBroker();
  let passed = 0;
  let failed = 0;
  const kafka = new Kafka({ clientId: 'spate-test', brokers: [`127.0.0.1:${b.port}`], logLevel: logLevel.ERROR,
                            retry: { retries: 3 } });
  try {
    let messages = null;
    for (const [name, run] of [['produce_and_list_offsets', async () => { messages = await testProduceAndListOffsets(kafka); return 'ok'; }],
                               ['consume', async () => testConsume(kafka, messages)]]) {
      try {
        const outcome = await run();
        passed++;
        console.log(`ok   ${name} ${outcome === 'ok' ? '' : outcome}`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${name}: ${e.stack}`);
      }
    }
  } finally {
    const code = await stopBroker(b);
    if (code !== 0) { failed++; console.log(`FAIL broker exit code ${code}`); }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
