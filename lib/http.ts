// What every HTTP process shares: the app factory (request ids, metrics, health and readiness,
// problem+json for every error), and serving it: keep-alive timeouts that outlast the gateway's,
// a lingering close for bodies answered before they were read, and a bounded graceful close.
import { OpenAPIHono, type z } from '@hono/zod-openapi';
import { getRequestListener } from '@hono/node-server';
import type { Context, MiddlewareHandler, TypedResponse } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { httpInstrumentationMiddleware } from '@hono/otel';
import { HTTPException } from 'hono/http-exception';
import { requestId, type RequestIdVariables } from 'hono/request-id';
import type { AddressInfo, Socket } from 'node:net';
import { createServer, type IncomingMessage } from 'node:http';
import type { ProblemSchema } from './api-docs.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export const PROBLEM_TYPE = 'application/problem+json';

/** The body of a problem response, as the OpenAPI documents state it (lib/api-docs.ts). */
export type Problem = z.infer<typeof ProblemSchema>;

/** What a problem may carry besides its title and detail: the invalid fields or lines, the request id of a 500. */
export interface ProblemExtra {
  errors?: Problem['errors'];
  requestId?: string;
}

/**
 * A problem response typed for @hono/zod-openapi: a route that declares `status` with the problem
 * schema (problemResponse in lib/api-docs.ts) may return it, one that does not fails to compile.
 */
export type TypedProblem<S extends ContentfulStatusCode> = Response & TypedResponse<Problem, S, 'json'>;

/** An RFC 9457 problem response; the one error shape of every HTTP API here. */
export function problem<S extends ContentfulStatusCode>(status: S, title: string, detail?: string, extra: ProblemExtra = {}, headers: Record<string, string> = {}): TypedProblem<S> {
  const body: Problem = { type: 'about:blank', title, status, ...(detail ? { detail } : {}), ...extra };
  // TypedResponse is a type only (hono's c.json returns the same Response under the same type); the
  // body above is checked against the schema, so the type says what goes out.
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': PROBLEM_TYPE, ...headers } }) as TypedProblem<S>;
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

  // A server span per request, continuing the caller's W3C traceparent (lib/tracing.ts; a no-op
  // until the process starts tracing).
  app.use(httpInstrumentationMiddleware());
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

  // A path the app serves with other methods is a 405 naming them (RFC 9110), not a 404.
  const allowed = allowedMethods(app);
  app.notFound((c) => {
    const methods = allowed(c.req.path);
    if (methods.length === 0) return problem(404, 'Not Found', `no route for ${c.req.method} ${c.req.path}`);
    return problem(405, 'Method Not Allowed', `${c.req.path} answers ${methods.join(', ')}, not ${c.req.method}`, {}, { allow: methods.join(', ') });
  });
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

/** Hono's `/api/orders/:id` as a regular expression (the apps here use no wildcards or regex params). */
function routePattern(path: string): RegExp {
  const escape = (text: string) => text.replace(/[.*+?^$|()[\]{}\\]/g, '\\$&');
  return new RegExp(`^${path.split('/').map((segment) => (segment.startsWith(':') ? '[^/]+' : escape(segment))).join('/')}$`);
}

/** The methods an app serves at a path (HEAD wherever GET is), from its routes at the time. */
function allowedMethods(app: Pick<OpenAPIHono<AppEnv>, 'routes'>): (path: string) => string[] {
  let routes: { pattern: RegExp; method: string }[] = [];
  let seen = -1;
  return (path) => {
    if (seen !== app.routes.length) {
      seen = app.routes.length;
      routes = app.routes.filter((r) => r.method !== 'ALL').map((r) => ({ method: r.method, pattern: routePattern(r.path) }));
    }
    const methods = new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method));
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  };
}

/**
 * For body-limit middleware: an oversized body is a 413 problem. What the client still sends is
 * read and thrown away after the answer (see `lingerAfterEarlyResponse`), so the client gets the
 * 413 whether it reads while uploading or only once it has sent everything.
 */
export const payloadTooLarge = (maxBytes: number) => (_c: Context) => problem(413, 'Payload Too Large', `request body exceeds ${maxBytes} bytes`);

/**
 * Bodies larger than `maxBytes` get a 413 problem. hono's bodyLimit reads `c.req.raw.body` first,
 * which makes @hono/node-server build a web Request and stream for every request, GETs included
 * (a fifth of the sandbox ERP's CPU per call in a profile of `npm run demo:rate-limit`). A declared Content-Length is all
 * that needs checking (Node's parser holds the body to it) and a request with neither it nor
 * Transfer-Encoding has no body; only a chunked body goes through hono's counting stream.
 */
export function limitBody(maxBytes: number): MiddlewareHandler {
  const tooLarge = payloadTooLarge(maxBytes);
  const chunked = bodyLimit({ maxSize: maxBytes, onError: tooLarge });
  return async (c, next) => {
    const length = c.req.header('content-length');
    if (c.req.header('transfer-encoding') !== undefined) return chunked(c, next);
    if (length === undefined) return next();
    return Number.parseInt(length, 10) > maxBytes ? tooLarge(c) : next();
  };
}

/**
 * Idle keep-alive connections. nginx closes its idle upstream connections after 60 s
 * (`keepalive_timeout` in each `upstream` of nginx.conf); a service keeps an idle connection for
 * longer, so it is always nginx that closes one, never the service while nginx is sending a request
 * on it (which nginx reports as a 502). Node's default, 5 s, is what produced those 502s.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/**
 * Time to receive a request's headers, counted from its first byte (Node >= 18: an idle keep-alive
 * connection is not timed by it, so it need not exceed KEEP_ALIVE_TIMEOUT_MS). Short, because only
 * a client talking to a service directly can be slow here: nginx forwards whole headers at once.
 */
export const HEADERS_TIMEOUT_MS = 20_000;

/** How much of an unread request body is read and discarded after an early answer, and for how long. */
export interface LingerLimits {
  maxBytes: number;
  /** From the end of the answer to the end of the body. */
  maxMs: number;
  /** Without a byte from the client. */
  idleMs: number;
}
/** Twice the largest body a route accepts (imports, 32 MiB); nginx's lingering_time is 30 s too. */
export const LINGER: LingerLimits = { maxBytes: 64 * 1024 * 1024, maxMs: 30_000, idleMs: 5_000 };

export interface Served {
  port: number;
  close(): Promise<void>;
}

export interface ServeOptions {
  linger?: LingerLimits;
}

/** Listens on host:port (0 picks a free port) and resolves once listening. */
export function serveApp(
  app: { fetch: (req: Request, ...rest: never[]) => Response | Promise<Response> },
  port: number,
  host: string,
  { linger = LINGER }: ServeOptions = {},
): Promise<Served> {
  // autoCleanupIncoming off: @hono/node-server's own clean-up reads an unread body for at most
  // 500 ms and then closes the socket, the very reset lingerAfterEarlyResponse avoids.
  const listener = getRequestListener(app.fetch as never, { autoCleanupIncoming: false });
  const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS }, (req, res) => {
    // Prepended: it must run before Node's own 'finish' handler, which dumps or closes.
    res.prependOnceListener('finish', () => {
      if (!req.complete) lingerAfterEarlyResponse(req, req.socket, linger);
    });
    void listener(req, res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            // Finish requests in progress; idle keep-alive sockets are closed at once.
            const force = setTimeout(() => server.closeAllConnections(), 5000);
            force.unref();
            server.close(() => {
              clearTimeout(force);
              done();
            });
            server.closeIdleConnections();
          }),
      });
    });
  });
}

/**
 * Lingering close, as nginx does it. The answer (a 413, a 401…) went out before the request body
 * was read. Closing the socket now, with the client still uploading, makes the kernel answer its
 * next bytes with a reset, and a client that writes before it reads (or simply gets there first on
 * a busy machine) sees EPIPE or ECONNRESET instead of the answer. So the rest of the body is read
 * and thrown away: once it has all arrived the connection is clean (kept alive, or closed if it
 * was the last answer on it). A client that sends more than `maxBytes`, for longer than `maxMs`,
 * or stalls for `idleMs` is cut off: it has had the answer for that long.
 *
 * Reaches into Node's HTTP server (checked against Node 20 and 24, lib/_http_server.js
 * resOnFinish): after the last answer on a connection Node calls `socket.destroySoon()`, which
 * closes as soon as the answer is written. Here that call only half-closes (FIN: the client sees
 * the end of the answer) and the socket is destroyed once the body is read or a limit is passed.
 */
export function lingerAfterEarlyResponse(req: IncomingMessage, socket: Socket, limits: LingerLimits): void {
  if (socket.destroyed) return;
  let bytes = 0;
  let closeWhenDone = false;
  const done = (clean: boolean) => {
    clearTimeout(overall);
    clearTimeout(idle);
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
    delete (socket as Partial<Socket>).destroySoon; // back to the prototype's
    if (!clean || closeWhenDone) socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > limits.maxBytes) return done(false);
    idle.refresh();
  };
  const onEnd = () => done(true);
  const onClose = () => done(true);
  const overall = setTimeout(() => done(false), limits.maxMs);
  const idle = setTimeout(() => done(false), limits.idleMs);
  overall.unref();
  idle.unref();
  socket.destroySoon = () => {
    closeWhenDone = true;
    if (socket.writable) socket.end();
  };
  // Whoever was reading (a body parser that gave up) no longer is; what it left buffered counts too.
  req.removeAllListeners('data');
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('close', onClose);
  req.on('error', () => undefined); // a client that hangs up mid-body is no error of ours
  req.resume();
}
