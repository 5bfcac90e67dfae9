// What the services' OpenAPI documents share: the problem+json schema, keyset pagination
// (`limit` + opaque `cursor` in, `items` + `nextCursor` out) and the admin API-key scheme.
import { z } from '@hono/zod-openapi';
import type { OpenAPIHono } from '@hono/zod-openapi';

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number(),
    detail: z.string().optional(),
    errors: z.array(z.object({ path: z.string().optional(), line: z.number().optional(), message: z.string() })).optional(),
  })
  .openapi('Problem');
export const problemContent = { 'application/problem+json': { schema: ProblemSchema } };

/** A problem response for a route's `responses`. */
export const problemResponse = (description: string) => ({ description, content: problemContent });

export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ param: { name: 'limit', in: 'query' }, example: 20 }),
  cursor: z
    .string()
    .max(200)
    .optional()
    .openapi({ param: { name: 'cursor', in: 'query' }, description: 'nextCursor of the previous page' }),
};

/** `{ items, nextCursor }`: nextCursor is null on the last page. */
export const pageOf = <T extends z.ZodType>(item: T, name: string) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() }).openapi(name);

/** Cursors are opaque to clients: the key of the last item seen, base64url-encoded. */
export const encodeCursor = (key: string | number) => Buffer.from(JSON.stringify(key)).toString('base64url');

export function decodeCursor<T extends string | number>(cursor: string | undefined, kind: 'string' | 'number'): T | undefined | Error {
  if (cursor === undefined) return undefined;
  try {
    const key: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString());
    if (typeof key === kind) return key as T;
  } catch {
    // falls through
  }
  return new Error('cursor is not one this API gave out');
}

export const ADMIN_SCHEME = 'adminKey';

/** Declares the X-API-Key scheme the admin routes name in their `security`. */
export function registerAdminScheme(app: Pick<OpenAPIHono, 'openAPIRegistry'>): void {
  app.openAPIRegistry.registerComponent('securitySchemes', ADMIN_SCHEME, {
    type: 'apiKey',
    in: 'header',
    name: 'X-API-Key',
    description: 'ADMIN_API_KEY of the service (or `Authorization: Bearer <key>`)',
  });
}

export const adminSecurity = [{ [ADMIN_SCHEME]: [] }];
