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
import { withinDeadline } from './process.js';

export async function connectClient(url: string, options: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, options, false);
  coalesceWrites(client.stream);
  client.on('connect', () => coalesceWrites(client.stream));
  return client;
}

/**
 * An MQTT request's answer (SUBACK, UNSUBACK, PUBACK), or an error saying which request went
 * unanswered: when the client's connection closes first, or after `timeoutMs`. With reconnectPeriod 0
 * mqtt.js never settles a QoS 1 publish whose connection closed, nor a request made after the close
 * (it queues it for a reconnect that never comes): a test would wait until its own time limit.
 */
export async function answered<T>(client: MqttClient, request: Promise<T>, what: string, timeoutMs = 30_000): Promise<T> {
  let onClose: (() => void) | undefined;
  const closed = new Promise<never>((_, reject) => {
    onClose = () => reject(new Error(`${what}: the connection closed before the broker answered`));
    if (client.disconnected || !client.connected) onClose();
    else client.once('close', onClose);
  });
  closed.catch(() => {});
  try {
    return await withinDeadline(Promise.race([request, closed]), Date.now() + timeoutMs, `${what}: no answer from the broker within ${timeoutMs} ms`);
  } finally {
    if (onClose) client.removeListener('close', onClose);
  }
}
