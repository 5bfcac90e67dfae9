// Admin routes authenticate with one shared API key (`ADMIN_API_KEY`), sent as `X-API-Key` or
// `Authorization: Bearer`. Compared in constant time; with no key configured the routes are off.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RouteConfig } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { adminSecurity } from './api-docs.js';
import { problem } from './http.js';
import type { Logger } from './log.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Middleware for admin routes: 401 without the right key, 503 when the service has no key at all. */
export function requireAdminKey(key: string | undefined, log: Logger): MiddlewareHandler {
  if (!key) log.warn('ADMIN_API_KEY is not set: admin routes answer 503');
  // Hashing first gives equal-length buffers, so neither the content nor the length leaks by timing.
  const expected = key ? digest(key) : undefined;
  return async (c, next) => {
    if (!expected) return problem(503, 'Admin API disabled', 'this service has no ADMIN_API_KEY configured');
    const bearer = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const given = c.req.header('x-api-key') ?? bearer;
    if (given === undefined || !timingSafeEqual(digest(given), expected)) {
      return problem(401, 'Unauthorized', 'a valid admin API key is required (X-API-Key header)', {}, { 'www-authenticate': 'Bearer' });
    }
    await next();
  };
}

/**
 * An admin route, declared at module level with `security: adminSecurity`, with the service's key
 * check in front. Refuses (at start-up) a route whose document does not name the admin scheme, so
 * the document and the check agree (test/admin-auth.test.ts checks the other way round).
 */
export function withAdminKey<R extends RouteConfig>(route: R, check: MiddlewareHandler): R & { middleware: MiddlewareHandler[] } {
  if (route.security !== adminSecurity) throw new Error(`${route.method.toUpperCase()} ${route.path} takes the admin key but its document does not say so (security: adminSecurity)`);
  return { ...route, middleware: [check] };
}
