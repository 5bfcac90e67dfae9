// Reading a process's Prometheus figures in tests and benchmarks.

/**
 * The value of metric `name` in Prometheus text: its first line whose labels include each of
 * `labels` (e.g. 'workflow="orders"'); undefined when there is none.
 */
export function metricValue(text: string, name: string, ...labels: string[]): number | undefined {
  const line = text.split('\n').find((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && labels.every((label) => l.includes(label)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Fetches `url`'s metrics (e.g. a worker's http://…/metrics) and reads them with metricValue. */
export async function scrape(url: string): Promise<(name: string, ...labels: string[]) => number | undefined> {
  const text = await (await fetch(url)).text();
  return (name, ...labels) => metricValue(text, name, ...labels);
}
