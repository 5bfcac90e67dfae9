// What the services' OpenAPI documents share: the problem+json schema, keyset pagination
// (`limit` + `cursor` in, `items` + `nextCursor` out), the admin API-key scheme, and the pieces
// that make a document say exactly what zod accepts (strict query integers, format patterns).
import { z } from '@hono/zod-openapi';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { productId } from './topics.js';

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

/** A number as JSON writes it (no sign +, no spaces, no leading zeros, no hex). */
export const JSON_NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

/**
 * An integer in a query string, read as the document's `integer` says: a JSON number with no
 * fraction ("10", "1e1" and "10.0" are ten), while " 5", "05", "+3", "0x10" or "null" are refused
 * rather than coerced into something the client did not write.
 */
export const queryInteger = (min: number, max: number) =>
  z.preprocess((v) => (typeof v === 'string' && JSON_NUMBER.test(v) ? Number(v) : v), z.number().int().min(min).max(max));

/**
 * Where a page starts: the key of the last item of the previous page, as `nextCursor` gave it.
 * Keyset pagination makes any key a position, so a cursor is valid exactly when it has the key's
 * shape, which the document states (clients still treat it as opaque).
 */
export const cursors = {
  /** Lists in product id order. */
  productId,
  /** Lists newest first: a position (a row number). */
  position: z
    .string()
    .regex(/^(0|[1-9][0-9]{0,14})$/, 'a position, as nextCursor gave it')
    .transform(Number),
};

const cursorParam = { param: { name: 'cursor', in: 'query' as const }, description: 'nextCursor of the previous page; none for the first' };

/** `limit` and `cursor`, for a list whose cursor has the given shape. */
export const pageQuery = <C extends z.ZodType>(cursor: C) => ({
  limit: queryInteger(1, 100).default(20).openapi({ param: { name: 'limit', in: 'query' }, example: 20 }),
  cursor: cursor.optional().openapi(cursorParam),
});

/** `{ items, nextCursor }`: nextCursor is null on the last page. */
export const pageOf = <T extends z.ZodType>(item: T, name: string) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() }).openapi(name);

/** The `nextCursor` of a page: the last item's key, when there is a next page. */
export const nextCursor = (more: boolean, lastKey: string | number | undefined) => (more && lastKey !== undefined ? String(lastKey) : null);

/**
 * For text checked as `z.string().max(n).trim().min(1)`: its length as sent, then trimmed and not
 * blank. The pattern (a character that is not white space) is what "at least 1 once trimmed" means.
 */
export const nonBlank = { pattern: '\\S', description: 'must not be blank; surrounding white space is trimmed' };

/**
 * zod's own regular expressions for the string formats it checks, written into the document next
 * to `format` (an annotation in JSON Schema 2020-12: a `format: uuid` alone allows any string, and
 * validators that do check formats read email and uuid more loosely than zod).
 */
export const formatPatterns = {
  uuid: { pattern: z.regexes.uuid().source },
  email: { pattern: z.regexes.email.source },
};

/** A UUID, in any case, as the lower-case form the services generate and store (RFC 9562: UUIDs are case-insensitive on input). */
export const uuidInput = () => z.uuid().overwrite((id) => id.toLowerCase());

/** A UUID in a path, documented with the pattern zod checks. */
export const uuidParam = (name: string) => uuidInput().openapi({ param: { name, in: 'path' }, ...formatPatterns.uuid });

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

/** The answers every admin route adds to its own (lib/admin-key.ts). */
export const adminResponses = {
  401: problemResponse('Missing or wrong API key'),
  503: problemResponse('Admin routes disabled (no ADMIN_API_KEY)'),
};
