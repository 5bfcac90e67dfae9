// An MQTT client for tests and benchmarks that connects once: mqtt.connectAsync with mqtt.js's
// allowRetries off, so that a connection the broker closes before its CONNACK (a refusal past a
// limit, a broker stopping) rejects. By default mqtt.js's promise waits for a reconnect instead,
// and with reconnectPeriod 0 none ever comes: the test would hang (a CI run once did).
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export const connectClient = (url: string, options: IClientOptions): Promise<MqttClient> => mqtt.connectAsync(url, options, false);
