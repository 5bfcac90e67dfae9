// Graceful shutdown written once: on SIGTERM or SIGINT run the process's stop steps in order
// (stop taking work, finish or hand back what is in flight, close connections), then exit.
import type { Logger } from './log.js';

// Until a process has registered its stop steps it is still starting: nothing is in flight that a
// signal could lose (a message being handled is unacknowledged, so the broker keeps it). A signal
// then ends the process at once, with exit code 0, instead of Node's default death by signal.
const whileStarting = () => process.exit(0);
process.on('SIGTERM', whileStarting);
process.on('SIGINT', whileStarting);

export function onShutdown(log: Logger, stop: () => Promise<void>, { timeoutMs = 15_000 } = {}): void {
  process.off('SIGTERM', whileStarting);
  process.off('SIGINT', whileStarting);
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ timeoutMs }, 'shutdown took too long; exiting anyway');
      process.exit(1);
    }, timeoutMs);
    force.unref();
    stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled rejection');
    process.exit(1);
  });
}

/** Resolves after ms; for retry loops. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
