// JSON logs with pino, one logger per process; every line names the service that wrote it.
//
// Written synchronously to stdout. pino's default asynchronous destination flushes at exit with a
// loop that retries every error, EPIPE included: a process whose stdout reader had gone (its parent
// crashed) hung forever in process.exit and so "ignored" SIGTERM. A synchronous write meets the
// EPIPE at once, and pino then stops logging instead of retrying (test/shutdown.test.ts).
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(service: string, level = 'info'): Logger {
  return pino({
    name: service,
    level,
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  }, pino.destination({ dest: 1, sync: true }));
}
