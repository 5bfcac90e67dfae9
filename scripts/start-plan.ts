// What `npm start` runs, derived from the process declaration (lib/processes.ts): one entry per
// process (or per replica), with the environment the declaration gives it: its ports, its MQTT
// login, the admin key where it has admin routes. A pure function, so that test/processes.test.ts
// checks it against the declaration, a fourth service included, without starting anything.
import { httpPort, type ProcessDeclaration } from '../lib/processes.js';

export interface PlannedProcess {
  /** The process's name, or `<name>-<n>` for a replicated one. */
  name: string;
  declaration: ProcessDeclaration;
  entry: string;
  env: Record<string, string>;
}

export interface StartPlanOptions {
  /** Every port variable's value (startPorts' startVariable → port). */
  ports: Readonly<Record<string, number>>;
  /** Environment every process gets. */
  shared: Readonly<Record<string, string>>;
  /** The environment that logs a process in to the broker as `user`. */
  login: (user: string) => Record<string, string>;
  adminKey: string;
  /** How many of a replicated process to run, by name (default 1). */
  replicas?: Readonly<Record<string, number>>;
  /** What a process needs beyond the declaration (the ERP's capacity, a worker's id, …). */
  extra?: (p: ProcessDeclaration, name: string) => Record<string, string>;
}

export function startPlan(processes: readonly ProcessDeclaration[], options: StartPlanOptions): PlannedProcess[] {
  const { ports, shared, login, adminKey, replicas = {}, extra = () => ({}) } = options;
  const portOf = (variable: string) => {
    const value = ports[variable];
    if (value === undefined) throw new Error(`npm start: no value for ${variable}`);
    return value;
  };
  return processes.flatMap((p) => {
    const own: Record<string, string> = { ...shared, ...(p.mqttUser ? login(p.mqttUser) : {}), ...(p.adminKey ? { ADMIN_API_KEY: adminKey } : {}) };
    for (const [variable, d] of Object.entries(p.ports)) own[variable] = String(portOf(d.startVariable));
    if (!p.replicas) return [{ name: p.name, declaration: p, entry: p.entry, env: { ...own, ...extra(p, p.name) } }];
    // Replica 1 on the process's own port, the others from nextPort on (0: each picks a free one).
    const next = portOf(p.replicas.nextPort.startVariable);
    const first = portOf(httpPort(p).startVariable);
    return Array.from({ length: replicas[p.name] ?? 1 }, (_, i) => {
      const name = `${p.name}-${i + 1}`;
      const port = i === 0 ? first : next === 0 ? 0 : next + i - 1;
      return { name, declaration: p, entry: p.entry, env: { ...own, HTTP_PORT: String(port), ...extra(p, name) } };
    });
  });
}
