// What every HTTP process shares: the app factory (request ids, metrics, health and readiness,
// problem+json for every error), and serving it with a bounded graceful close.
import { OpenAPIHono } from '@hono/zod-openapi';
import { serve } from '@hono/node-server';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { requestId, type RequestIdVariables } from 'hono/request-id';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  status: number;
  title: string;
  detail?: string;
  [extra: string]: unknown;
}

/** An RFC 9457 problem response; the one error shape of every HTTP API here. */
export function problem(status: number, title: string, detail?: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Response {
  const body: Problem = { type: 'about:blank', title, status, ...(detail ? { detail } : {}), ...extra };
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': PROBLEM_TYPE, ...headers } });
}

export type AppEnv = { Variables: RequestIdVariables };

export interface Readiness {
  /** Name → healthy? Every check must pass for /readyz to answer 200. */
  (): Record<string, boolean>;
}

export interface AppOptions {
  log: Logger;
  metrics: Metrics;
  ready: Readiness;
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp({ log, metrics, ready }: AppOptions): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    // Requests that fail their zod schema get a 400 problem listing each invalid field.
    defaultHook: (result) => {
      if (!result.success) {
        const errors = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
        return problem(400, 'Invalid request', errors.map((e) => `${e.path || '(body)'}: ${e.message}`).join('; '), {
          errors,
        });
      }
      return undefined;
    },
  });

  app.use(
    requestId({
      // An incoming id (from nginx) is kept when it is sane; otherwise we make one.
      generator: (c) => {
        const incoming = c.req.header('x-request-id');
        return incoming && requestIdPattern.test(incoming) ? incoming : crypto.randomUUID();
      },
    }),
  );
  app.use(async (c, next) => {
    const end = metrics.httpDuration.startTimer();
    await next();
    const route = c.req.routePath || 'unmatched';
    end({ method: c.req.method, route });
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
  });

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const checks = ready();
    const ok = Object.values(checks).every(Boolean);
    return c.json({ status: ok ? 'ready' : 'not ready', checks }, ok ? 200 : 503);
  });
  app.get('/metrics', async (c) => {
    c.header('content-type', metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });

  app.notFound((c) => problem(404, 'Not Found', `no route for ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      const status = err.status;
      const title = status === 413 ? 'Payload Too Large' : status === 400 ? 'Bad Request' : err.message || 'Error';
      return problem(status, title, err.message);
    }
    log.error({ err, requestId: c.get('requestId'), path: c.req.path }, 'unhandled error');
    return problem(500, 'Internal Server Error', 'an unexpected error occurred; it has been logged', {
      requestId: c.get('requestId'),
    });
  });
  return app;
}

/**
 * For body-limit middleware: an oversized body is a 413 problem. The rest of the body is never
 * read, so the connection cannot carry another request: say so, or a keep-alive client would send
 * its next request on a socket the server is about to close.
 */
export const payloadTooLarge = (maxBytes: number) => (_c: Context) =>
  problem(413, 'Payload Too Large', `request body exceeds ${maxBytes} bytes`, {}, { connection: 'close' });

export interface Served {
  port: number;
  close(): Promise<void>;
}

/** Listens on host:port (0 picks a free port) and resolves once listening. */
export function serveApp(app: { fetch: (req: Request, ...rest: never[]) => Response | Promise<Response> }, port: number, host: string): Promise<Served> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch as never, port, hostname: host }, (info: AddressInfo) => {
      resolve({
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            const s = server as Server;
            // Finish requests in progress; idle keep-alive sockets are closed at once.
            const force = setTimeout(() => s.closeAllConnections?.(), 5000);
            force.unref();
            s.close(() => {
              clearTimeout(force);
              done();
            });
            s.closeIdleConnections?.();
          }),
      });
    });
    server.once('error', reject);
  });
}
