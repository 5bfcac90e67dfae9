// What persistent sessions' many topic filters cost every publish: one broker; a publisher sends
// QoS 1 on new public topics (each order has its own), first with no other session, then with one
// persistent session holding BENCH_FILTERS filters, connected and then away. Anonymous clients (no
// ACL), so no bound applies: the repository's ACL lets one viewer client hold 100 filters and the
// login 100 sessions ("#@ filters", "#@ sessions"), and this measures what the matching costs
// whoever holds them. Prints the milliseconds per publish of each phase and their ratio to the
// first, in one run. Before the broker matched persistent subscriptions in a topic trie, one viewer
// session with 20,000 filters made each publish on a new topic cost 23-28 ms (63-76 ×).
//
//   npm run bench:session-filters   (BENCH_FILTERS=20000 BENCH_PUBLISHES=500)
import mqtt from 'mqtt';
import { startBroker } from '../harness/broker.js';
import { eventually } from '../harness/process.js';
import { processesFrom } from './from.js';

const FILTERS = Number(process.env.BENCH_FILTERS ?? 20_000);
const PUBLISHES = Number(process.env.BENCH_PUBLISHES ?? 500);
for (const [name, n] of Object.entries({ BENCH_FILTERS: FILTERS, BENCH_PUBLISHES: PUBLISHES })) {
  if (!Number.isInteger(n) || n < 100) throw new Error(`${name} must be a whole number of at least 100`);
}
const compiled = processesFrom('BENCH_FROM') === 'dist';

// The harness's broker: anonymous clients allowed, a scratch data directory removed at exit.
const broker = await startBroker({ compiled });
const login = (clientId: string, clean: boolean) => mqtt.connectAsync(broker.mqttUrl, { clientId, clean, reconnectPeriod: 0 });
const orders = await login('orders-bench', true);
const viewer = await login('viewer-many-filters', false);
try {
  /** Milliseconds per QoS 1 publish, each on a topic not seen before, one after the other. */
  const perPublish = async (phase: string) => {
    const started = performance.now();
    for (let i = 0; i < PUBLISHES; i++) await orders.publishAsync(`woodytoys/public/orders/${phase}-${i}`, 'status', { qos: 1 });
    return (performance.now() - started) / PUBLISHES;
  };
  await perPublish('warm-up');
  const none = await perPublish('none');
  const subscribedAt = performance.now();
  for (let i = 0; i < FILTERS; i += 100) {
    await viewer.subscribeAsync(
      Array.from({ length: Math.min(100, FILTERS - i) }, (_, k) => `woodytoys/public/stock/levels/p${i + k}`),
      { qos: 1 },
    );
  }
  const subscribeSeconds = (performance.now() - subscribedAt) / 1000;
  const connected = await perPublish('connected');
  await viewer.endAsync();
  // Away: the broker has let go of the connection's own subscriptions (Aedes's in-memory ones).
  await eventually(async () => /^mqtt_connected_clients(?:{[^}]*})? 1$/m.test(await (await fetch(`${broker.httpUrl}/metrics`)).text()), { what: 'the viewer gone' });
  const away = await perPublish('away');
  const row = (label: string, ms: number) => `${label.padEnd(44)}${ms.toFixed(3).padStart(8)} ms${(ms / none).toFixed(2).padStart(8)} ×`;
  console.log(`${PUBLISHES} QoS 1 publishes on new topics each; one session subscribed to ${FILTERS} filters in ${subscribeSeconds.toFixed(1)} s`);
  console.log(row('no other session', none));
  console.log(row(`a session with ${FILTERS} filters, connected`, connected));
  console.log(row(`a session with ${FILTERS} filters, away`, away));
} finally {
  await Promise.all([orders.endAsync(), viewer.endAsync()]);
  await broker.stop();
}
