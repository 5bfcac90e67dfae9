// Logs with pino, one logger per process; every line names the service that wrote it. JSON lines
// for machines (containers, log shippers, the tests that read a child's output), pino-pretty's
// readable lines for a person at a terminal: LOG_FORMAT=json|pretty forces either.
//
// Written synchronously to stdout, in both formats. pino's default asynchronous destination flushes
// at exit with a loop that retries every error, EPIPE included: a process whose stdout reader had
// gone (its parent crashed) hung forever in process.exit and so "ignored" SIGTERM. A synchronous
// write meets the EPIPE at once, and pino then stops logging instead of retrying
// (test/shutdown.test.ts). pino-pretty is therefore used as a function (prettyFactory) in front of
// that same destination, not as its own stream or worker-thread transport, which would buffer.
import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { traceFields } from './tracing.js';

export type { Logger };

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** LOG_FORMAT when set (config.ts validates it), else pretty on a terminal and JSON anywhere else. */
export function logFormat(env: NodeJS.ProcessEnv = process.env, terminal = process.stdout.isTTY === true): LogFormat {
  const forced = env.LOG_FORMAT;
  if (forced === 'json' || forced === 'pretty') return forced;
  return terminal ? 'pretty' : 'json';
}

/**
 * One line per entry; the service is already in pino-pretty's "(name)", the pid is noise to a reader.
 * Loaded only when wanted: JSON processes (containers, tests) start without it.
 */
function prettify(): (line: string) => string {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return prettyFactory({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service', singleLine: true });
}

export function createLogger(service: string, level = 'info', format: LogFormat = logFormat()): Logger {
  const stdout = pino.destination({ dest: 1, sync: true });
  let destination: DestinationStream = stdout;
  if (format === 'pretty') {
    const pretty = prettify();
    destination = { write: (line: string) => stdout.write(pretty(line)) };
  }
  return pino(
    {
      name: service,
      level,
      base: { service, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // The active trace's ids on every line written while handling a request or a message (lib/tracing.ts).
      mixin: traceFields,
    },
    destination,
  );
}
