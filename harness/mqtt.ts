// An MQTT client for tests and benchmarks that connects once: mqtt.connectAsync with mqtt.js's
// allowRetries off, so that a connection the broker closes before its CONNACK (a refusal past a
// limit, a broker stopping) rejects. By default mqtt.js's promise waits for a reconnect instead,
// and with reconnectPeriod 0 none ever comes: the test would hang (a CI run once did).
//
// Its connection writes as the services' own connections do (lib/wire.ts: what a turn of the
// event loop writes leaves in one call, without Nagle's delay). mqtt.js alone leaves Nagle on, and
// a member's small PUBACKs then wait for the broker's delayed TCP acknowledgement (some 40 ms on
// Linux), which a broker that answers a publisher only once a member acknowledged (write-behind)
// passes on to the publisher; a benchmark would measure that rather than the broker.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { coalesceWrites } from '../lib/wire.js';

export async function connectClient(url: string, options: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, options, false);
  coalesceWrites(client.stream);
  client.on('connect', () => coalesceWrites(client.stream));
  return client;
}
