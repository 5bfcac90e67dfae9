// Requests made from an OpenAPI 3.1 document, and the check of each answer against it: for a test
// that a service's document says exactly what it accepts. Valid requests come from
// json-schema-faker (seeded, so a failure can be replayed); mutated ones break exactly one part
// of a valid request. Validity is always decided by ajv on the document's own schemas (JSON Schema
// 2020-12, where `format` is an annotation: what a document allows is what its keywords say).
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { generateSync } from 'json-schema-faker';

export type Schema = Record<string, unknown>;

export interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: Schema;
}

export interface Operation {
  method: string;
  /** The templated path, e.g. /api/orders/{id}. */
  path: string;
  parameters: Parameter[];
  body?: { required: boolean; content: Record<string, Schema> };
  responses: Record<string, { content?: Record<string, Schema>; headers?: Record<string, { required?: boolean }> }>;
  /** Names of the security schemes it needs (API keys in headers). */
  security: string[];
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components?: { schemas?: Record<string, Schema>; securitySchemes?: Record<string, { type: string; in: string; name: string }> };
}

/** The document with every local `$ref` replaced by what it points to. */
function dereference(doc: OpenApiDocument): OpenApiDocument {
  const resolve = (value: unknown, seen: string[]): unknown => {
    if (Array.isArray(value)) return value.map((v) => resolve(v, seen));
    if (value === null || typeof value !== 'object') return value;
    const ref = (value as { $ref?: unknown }).$ref;
    if (typeof ref === 'string') {
      if (seen.includes(ref)) throw new Error(`recursive $ref ${ref}`);
      const target = ref.replace(/^#\//, '').split('/').reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], doc);
      return resolve(target, [...seen, ref]);
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, seen)]));
  };
  return resolve(doc, []) as OpenApiDocument;
}

export function operations(document: OpenApiDocument): Operation[] {
  const doc = dereference(document);
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => {
      const body = op.requestBody as { required?: boolean; content: Record<string, { schema: Schema }> } | undefined;
      return {
        method: method.toUpperCase(),
        path,
        parameters: ((op.parameters ?? []) as Parameter[]).map((p) => ({ ...p, required: p.required ?? false })),
        ...(body ? { body: { required: body.required ?? false, content: Object.fromEntries(Object.entries(body.content).map(([type, c]) => [type, c.schema])) } } : {}),
        responses: Object.fromEntries(
          Object.entries(op.responses as Record<string, { content?: Record<string, { schema: Schema }>; headers?: Record<string, { required?: boolean }> }>).map(([status, r]) => [
            status,
            { ...(r.content ? { content: Object.fromEntries(Object.entries(r.content).map(([type, c]) => [type, c.schema])) } : {}), ...(r.headers ? { headers: r.headers } : {}) },
          ]),
        ),
        security: ((op.security ?? []) as Record<string, unknown>[]).flatMap((s) => Object.keys(s)),
      } satisfies Operation;
    }),
  );
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
const compiled = new WeakMap<Schema, ValidateFunction>();

/** Whether `value` is valid for `schema`, and if not, ajv's words. */
export function check(schema: Schema, value: unknown): { valid: boolean; errors: string } {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  const valid = validate(value);
  return { valid, errors: valid ? '' : ajv.errorsText(validate.errors) };
}

/** A small deterministic random source for the choices json-schema-faker does not make. */
export class Choices {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 1;
  }
  /** 0 … n-1 (xorshift32). */
  below(n: number): number {
    this.state ^= this.state << 13;
    this.state ^= this.state >>> 17;
    this.state ^= this.state << 5;
    return (this.state >>> 0) % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  chance(percent: number): boolean {
    return this.below(100) < percent;
  }
}

export interface Request {
  method: string;
  /** Path and query, encoded. */
  url: string;
  headers: Record<string, string>;
  body?: string;
  /** What makes it invalid, for a mutated one; undefined for a valid one. */
  mutation?: string;
  /** The content type it was sent as (the documented schema that applies). */
  contentType?: string;
}

export interface Generation {
  seed: number;
  /** Header values for each security scheme the operation names. */
  credentials: Record<string, string>;
  /** Values to use now and then for a path parameter (e.g. ids that exist), by name. */
  known?: Record<string, string[]>;
}

const NDJSON = /ndjson|jsonl/;

/** A parameter's value as it travels (path, query or header): a string. */
const serialize = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** A parameter's string as the document's schema reads it: numbers (JSON's spelling) and booleans are typed. */
export function deserialize(schema: Schema, text: string): unknown {
  const type = schema.type;
  if ((type === 'integer' || type === 'number') && /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(text)) return Number(text);
  if (type === 'boolean' && (text === 'true' || text === 'false')) return text === 'true';
  return text;
}

function generate(schema: Schema, seed: number): unknown {
  return generateSync(schema as never, { seed, optionalsProbability: 0.5, maxDefaultItems: 3 });
}

/**
 * A value json-schema-faker made and ajv agrees is valid, in a few tries: some schemas defeat it
 * now and then (it may give up on a `minProperties` when it left every optional property out).
 */
function validValue(schema: Schema, seed: number, what: string): unknown {
  for (let i = 0; i < 20; i++) {
    let value: unknown;
    try {
      value = generate(schema, seed + i * 7919);
    } catch {
      continue;
    }
    if (check(schema, value).valid) return value;
  }
  throw new Error(`json-schema-faker made no valid value for ${what}: ${JSON.stringify(schema)}`);
}

interface Parts {
  params: Map<Parameter, string | undefined>;
  headers: Record<string, string>;
  contentType?: string;
  bodyValue?: unknown;
  /** A raw body that replaces bodyValue (a mutation of the text itself). */
  rawBody?: string;
}

function build(op: Operation, parts: Parts): Request {
  let path = op.path;
  const query = new URLSearchParams();
  const headers = { ...parts.headers };
  for (const [p, value] of parts.params) {
    if (value === undefined) continue;
    if (p.in === 'path') path = path.replace(`{${p.name}}`, encodeURIComponent(value));
    else if (p.in === 'query') query.append(p.name, value);
    else headers[p.name] = value;
  }
  let body: string | undefined;
  if (parts.rawBody !== undefined) body = parts.rawBody;
  else if (parts.contentType && parts.bodyValue !== undefined) {
    body = NDJSON.test(parts.contentType) ? (parts.bodyValue as unknown[]).map((v) => JSON.stringify(v)).join('\n') + '\n' : JSON.stringify(parts.bodyValue);
  }
  if (parts.contentType && body !== undefined && !headers['content-type']) headers['content-type'] = parts.contentType;
  const qs = query.toString();
  return { method: op.method, url: qs ? `${path}?${qs}` : path, headers, ...(body !== undefined ? { body } : {}), ...(parts.contentType ? { contentType: parts.contentType } : {}) };
}

function validParts(op: Operation, gen: Generation, choices: Choices, doc: OpenApiDocument): Parts {
  const params = new Map<Parameter, string | undefined>();
  op.parameters.forEach((p, i) => {
    const known = gen.known?.[p.name];
    if (p.in === 'path' && known?.length && choices.chance(50)) return params.set(p, choices.pick(known));
    if (!p.required && choices.chance(50)) return params.set(p, undefined);
    params.set(p, serialize(validValue(p.schema, gen.seed + i * 104_729, `${op.method} ${op.path} ${p.in} ${p.name}`)));
  });
  const headers: Record<string, string> = {};
  for (const name of op.security) {
    const scheme = doc.components?.securitySchemes?.[name];
    if (scheme?.in === 'header') headers[scheme.name.toLowerCase()] = gen.credentials[name] ?? '';
  }
  const parts: Parts = { params, headers };
  if (op.body) {
    const contentType = choices.pick(Object.keys(op.body.content));
    const schema = op.body.content[contentType]!;
    parts.contentType = contentType;
    // NDJSON: the document gives one line's schema; the body is one or more such lines.
    parts.bodyValue = NDJSON.test(contentType)
      ? Array.from({ length: 1 + choices.below(4) }, (_, i) => validValue(schema, gen.seed + 31 * (i + 1), `${op.method} ${op.path} line`))
      : validValue(schema, gen.seed + 31, `${op.method} ${op.path} body`);
  }
  return parts;
}

export function validRequest(op: Operation, gen: Generation, doc: OpenApiDocument): Request {
  return build(op, validParts(op, gen, new Choices(gen.seed), doc));
}

/**
 * Candidate values for a place whose schema is `schema`: of the wrong kind, at and past each bound,
 * and the tricky strings of each format (the e-mails and UUIDs that validators disagree on). Some
 * are valid per the document, most are not; ajv decides.
 */
function candidates(schema: Schema): { value: unknown; why: string }[] {
  const out: { value: unknown; why: string }[] = [];
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  const add = (why: string, ...values: unknown[]) => values.forEach((value) => out.push({ value, why }));
  add('of another kind', 'x', {}, [], 7, null, true);
  if (types.includes('integer') || types.includes('number')) {
    add('a fraction', 1.5);
    add('a large number', 2 ** 53, 1e21, -(2 ** 53));
    for (const bound of [schema.minimum, schema.maximum]) if (typeof bound === 'number') add('at or past a bound', bound - 1, bound, bound + 1);
    add('zero', 0);
    if (schema.not && typeof schema.not === 'object' && 'const' in schema.not) add('the excluded value', (schema.not as { const: unknown }).const);
  }
  if (types.includes('string')) {
    add('blank or padded', '', ' ', '\t\n', '  x  ', 'a b', '\u00e9', '\u0000', '!');
    const max = typeof schema.maxLength === 'number' ? schema.maxLength : undefined;
    if (max !== undefined) add('at or past the length limit', 'x'.repeat(max), 'x'.repeat(max + 1), `  ${'x'.repeat(max - 2)}`, `  ${'x'.repeat(max)}  `);
    if (Array.isArray(schema.enum)) add('not in the enum', 'not-in-enum', String(schema.enum[0]).toUpperCase());
    if (schema.format === 'uuid' || /\[0-9a-fA-F\]\{8\}/.test(String(schema.pattern ?? ''))) {
      add(
        'a UUID-like string',
        '00000000-0000-0000-0000-000000000001', // not the RFC variant or a version
        '00000000-0000-0000-0000-000000000000', // nil
        'ffffffff-ffff-ffff-ffff-ffffffffffff', // max
        '6F1C2F0E-1B2C-4D3E-8F40-123456789ABC', // upper case v4
        '6f1c2f0e-1b2c-4d3e-cf40-123456789abc', // variant bits not 10xx
        'urn:uuid:6f1c2f0e-1b2c-4d3e-8f40-123456789abc',
        '6f1c2f0e1b2c4d3e8f40123456789abc',
        '{6f1c2f0e-1b2c-4d3e-8f40-123456789abc}',
      );
    }
    if (schema.format === 'email') {
      add('an e-mail address validators disagree on', 'a@b', 'a@b.c', 'a@example.com', 'user@[127.0.0.1]', '"quoted"@example.com', 'a..b@example.com', '.a@example.com', 'a.@example.com', 'x@a-.com', 'x@-a.com', 'ADA@EXAMPLE.COM', 'a+tag@example.co.uk', '\u00fc@example.com', 'a@example.c0m', 'a @example.com');
    }
  }
  if (types.includes('array')) {
    add('an empty array', []);
    if (typeof schema.maxItems === 'number' && schema.maxItems <= 100) add('too many items', Array(schema.maxItems + 1).fill('x'));
  }
  if (types.includes('object')) add('an empty object', {});
  return out;
}

/** Strings as a client could write a query or path value, valid or not for an integer. */
const numberSpellings = ['1e1', '0x10', ' 5', '+3', '', '05', '-0', 'null', '1.0'];

/** Every place in a JSON value, with the schema that applies there. */
function places(value: unknown, schema: Schema, path: (string | number)[] = []): { path: (string | number)[]; value: unknown; schema: Schema }[] {
  const here = [{ path, value, schema }];
  if (Array.isArray(value) && schema.items) return [...here, ...value.flatMap((v, i) => places(v, schema.items as Schema, [...path, i]))];
  if (value && typeof value === 'object' && schema.properties) {
    const props = schema.properties as Record<string, Schema>;
    return [...here, ...Object.entries(value).flatMap(([k, v]) => (props[k] ? places(v, props[k], [...path, k]) : []))];
  }
  return here;
}

function setAt(root: unknown, path: (string | number)[], value: unknown, remove = false): unknown {
  if (path.length === 0) return value;
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  if (remove) delete node[path.at(-1)!];
  else node[path.at(-1)!] = value;
  return copy;
}

export interface Variant extends Request {
  /** What was changed from a valid request. */
  mutation: string;
  /** Whether the request is still valid per the document (ajv), or 'credentials' when only the key is missing. */
  valid: boolean | 'credentials';
}

/**
 * A valid request with exactly one part changed: a parameter or a body field given another value
 * (see `candidates`), a field or parameter left out, an unknown field added, a body that is not
 * JSON, no credentials. ajv then says whether the document still allows it. Undefined when the
 * change drawn cannot be made on this operation.
 */
export function variantRequest(op: Operation, gen: Generation, doc: OpenApiDocument): Variant | undefined {
  const choices = new Choices(gen.seed ^ 0x5bd1e995);
  const parts = validParts(op, gen, choices, doc);
  const kind = choices.pick(['parameter', 'body', 'body', 'body', 'body-text', 'credentials'] as const);
  if (kind === 'parameter' && op.parameters.length > 0) {
    const p = choices.pick(op.parameters);
    if (p.in !== 'path' && choices.chance(15)) {
      return { ...build(op, { ...parts, params: new Map([...parts.params, [p, undefined]]) }), mutation: `${p.in} ${p.name} left out`, valid: !p.required };
    }
    const texts = [...candidates(p.schema).map((c) => ({ text: serialize(c.value), why: c.why })), ...numberSpellings.map((text) => ({ text, why: 'a number spelled another way' }))].filter(
      // An empty path segment is another path; a header value cannot have surrounding space or control characters.
      ({ text }) => !(p.in === 'path' && text === '') && !(p.in === 'header' && (text !== text.trim() || /[^\x20-\x7e]/.test(text))),
    );
    const { text, why } = choices.pick(texts);
    return {
      ...build(op, { ...parts, params: new Map([...parts.params, [p, text]]) }),
      mutation: `${p.in} ${p.name} ${why}: ${JSON.stringify(text).slice(0, 60)}`,
      valid: check(p.schema, deserialize(p.schema, text)).valid,
    };
  }
  if (kind === 'body' && op.body && parts.contentType) {
    const schema = op.body.content[parts.contentType]!;
    // NDJSON: a change to one line, judged by the line's schema.
    const lines = NDJSON.test(parts.contentType) ? (parts.bodyValue as unknown[]) : undefined;
    const index = lines ? choices.below(lines.length) : 0;
    const target = lines ? lines[index] : parts.bodyValue;
    const all = places(target, schema);
    const place = choices.pick(all);
    let changed: unknown;
    let mutation: string;
    const where = place.path.join('.') || '(whole)';
    const parent = all.find((p) => p.path.length === place.path.length - 1 && place.path.slice(0, -1).every((k, i) => k === p.path[i]));
    if (parent && typeof place.path.at(-1) === 'string' && choices.chance(20)) {
      changed = setAt(target, place.path, undefined, true);
      mutation = `body ${where} left out`;
    } else if (place.value && typeof place.value === 'object' && !Array.isArray(place.value) && choices.chance(20)) {
      changed = setAt(target, [...place.path, 'unexpected'], 1);
      mutation = `body ${where}.unexpected added`;
    } else {
      const { value, why } = choices.pick(candidates(place.schema));
      changed = setAt(target, place.path, value);
      mutation = `body ${where} ${why}: ${JSON.stringify(value)?.slice(0, 60)}`;
    }
    const bodyValue = lines ? lines.map((l, i) => (i === index ? changed : l)) : changed;
    return { ...build(op, { ...parts, bodyValue }), mutation: lines ? `line ${index + 1}: ${mutation}` : mutation, valid: check(schema, changed).valid };
  }
  if (kind === 'body-text' && op.body?.required) {
    const rawBody = choices.pick(['', '{', '[1,', '\u0000', 'null']);
    return { ...build(op, { ...parts, rawBody }), mutation: `body text ${JSON.stringify(rawBody)}`, valid: false };
  }
  if (kind === 'credentials' && op.security.length > 0) {
    const headers = { ...parts.headers };
    for (const name of op.security) delete headers[doc.components!.securitySchemes![name]!.name.toLowerCase()];
    return { ...build(op, { ...parts, headers }), mutation: 'no credentials', valid: 'credentials' };
  }
  return undefined;
}

/** What is wrong with an answer, per the document (empty: nothing). */
export function answerProblems(op: Operation, status: number, contentType: string | null, headers: Headers, text: string): string[] {
  const documented = op.responses[String(status)] ?? op.responses.default;
  if (!documented) return [`status ${status} is not documented (documented: ${Object.keys(op.responses).join(', ')})`];
  const problems: string[] = [];
  for (const [name, h] of Object.entries(documented.headers ?? {})) if (h.required && !headers.has(name)) problems.push(`header ${name} missing`);
  if (!documented.content) return text === '' ? problems : [...problems, 'a body where none is documented'];
  const type = (contentType ?? '').split(';')[0]!.trim();
  const schema = documented.content[type];
  if (!schema) return [...problems, `content type ${type} (documented: ${Object.keys(documented.content).join(', ')})`];
  let body: unknown = text; // a text/event-stream is text, its schema a string
  if (/[/+]json$/.test(type)) {
    try {
      body = JSON.parse(text);
    } catch {
      return [...problems, `body is not JSON: ${text.slice(0, 100)}`];
    }
  }
  const result = check(schema, body);
  if (!result.valid) problems.push(`body does not match the documented schema: ${result.errors}`);
  return problems;
}
