// What tests of the real nginx gateway share beyond starting it (gateway/nginx.ts).
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeMqtt } from '../lib/mqtt.js';
import { connectClient } from './mqtt.js';

/**
 * A runtime directory for nginx. Run as root, nginx's workers are `nobody`: they must be able to
 * enter it to write request bodies and responses to temporary files (mkdtemp makes it 0700).
 */
export function gatewayDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** The gateway's JSON access log, one object a line: HTTP requests and, marked `"protocol":"mqtt"`, MQTT sessions. */
export function accessLog<T = Record<string, string | number>>(file: string): T[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

/** One MQTT-over-TCP session through the gateway (nginx writes it when the session ends). */
export interface MqttSession {
  protocol: 'mqtt';
  remote_addr: string;
  /** 200, or 503 when limit_conn refused it, 502 when no broker node took it. */
  status: number;
  /** The broker node(s) tried, `a, b` when the first refused. */
  upstream: string;
  bytes_in: number;
  bytes_out: number;
}

/** The MQTT sessions of the gateway's access log. */
export const mqttSessions = (file: string): MqttSession[] => accessLog<MqttSession | { protocol?: undefined }>(file).filter((l): l is MqttSession => l.protocol === 'mqtt');

/**
 * An MQTT client through the gateway subscribes to `topic`, publishes `text` on it with QoS 1 and
 * resolves with what it got back (topic and payload), then disconnects.
 */
export async function roundTrip(url: string, { clientId, topic, text }: { clientId: string; topic: string; text: string }): Promise<[string, string]> {
  const client = await connectClient(url, { protocolVersion: 4, clientId, reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    await client.subscribeAsync(topic, { qos: 1 });
    const received = new Promise<[string, string]>((resolve) => client.once('message', (t, payload) => resolve([t, payload.toString()])));
    await client.publishAsync(topic, text, { qos: 1 });
    return await received;
  } finally {
    // Bounded: over WebSocket, mqtt.js's end() waits for a close its stream may never report.
    await closeMqtt(client, 2000);
  }
}
