// Several broker nodes (broker/main.ts with BROKER_STORE=redis) on one real redis-server, each a
// child process on free loopback ports with its own data directory, as harness/broker.ts starts one.
//
//   const cluster = await startBrokerCluster({ nodes: 3, env: { … } });
//   … mqtt.connect(cluster.nodes[i].mqttUrl) …
//   await cluster.stop();
import { startBroker, type RunningBroker } from './broker.js';
import { startRedis, type RedisOptions, type RunningRedis } from './redis.js';

export interface RunningCluster {
  redis: RunningRedis;
  nodes: RunningBroker[];
  /** Starts one more node on the same Redis (e.g. in place of a killed one). */
  addNode(env?: Record<string, string>): Promise<RunningBroker>;
  /** Every node (SIGTERM), then Redis. */
  stop(): Promise<void>;
}

export async function startBrokerCluster({
  nodes = 3,
  env = {},
  redis: redisOptions = {},
}: { nodes?: number; env?: Record<string, string>; redis?: RedisOptions } = {}): Promise<RunningCluster> {
  const redis = await startRedis(redisOptions);
  const running: RunningBroker[] = [];
  let named = 0;
  const addNode = async (extra: Record<string, string> = {}) => {
    const node = await startBroker({ env: { ...env, BROKER_STORE: 'redis', BROKER_REDIS_URL: redis.url, BROKER_NODE_ID: `node${++named}`, BROKER_NODE_LEASE_MS: '1500', ...extra } });
    running.push(node);
    return node;
  };
  try {
    // One after the other: two cores, and each node's start is mostly CPU.
    for (let i = 0; i < nodes; i++) await addNode();
  } catch (err) {
    await Promise.all(running.map((n) => n.kill()));
    await redis.kill();
    throw err;
  }
  return {
    redis,
    nodes: running,
    addNode,
    async stop() {
      await Promise.all(running.map((n) => n.stop()));
      await redis.stop();
    },
  };
}
