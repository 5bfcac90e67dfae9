// The catalog's SQL: products, the first-start seed, and the outbox that announces every change.
import { openDatabase, type DB } from '../../lib/db.js';
import { createEvent } from '../../lib/events.js';
import { enqueueEvent, outboxMigration } from '../../lib/outbox.js';
import { productChanged, productTopic } from '../../lib/topics.js';
import { seedProducts } from '../../lib/seed-products.js';

export const SOURCE = '/woodytoys/catalog';

const migrations = [
  `CREATE TABLE products (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     category TEXT NOT NULL,
     price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
     currency TEXT NOT NULL,
     active INTEGER NOT NULL DEFAULT 1,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE INDEX products_category ON products (category, id);
   CREATE TABLE catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   ${outboxMigration}`,
];

export interface Product {
  id: string;
  name: string;
  description: string;
  category: string;
  priceCents: number;
  currency: string;
  active: boolean;
  createdAt: string;
  updatedAt: string;
}

export type NewProduct = Pick<Product, 'id' | 'name' | 'description' | 'category' | 'priceCents'> & Partial<Pick<Product, 'currency' | 'active'>>;
export type ProductChanges = Partial<Omit<NewProduct, 'id'>>;

export interface ProductFilter {
  category?: string | undefined;
  minPriceCents?: number | undefined;
  maxPriceCents?: number | undefined;
  /** Words searched in name and description. */
  q?: string | undefined;
  active?: boolean | undefined;
  /** Id of the last product of the previous page. */
  after?: string | undefined;
  limit: number;
}

interface ProductRow {
  id: string;
  name: string;
  description: string;
  category: string;
  price_cents: number;
  currency: string;
  active: number;
  created_at: string;
  updated_at: string;
}

const toProduct = (r: ProductRow): Product => ({
  id: r.id,
  name: r.name,
  description: r.description,
  category: r.category,
  priceCents: r.price_cents,
  currency: r.currency,
  active: r.active === 1,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Every statement of the catalog, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[id: string], ProductRow>('SELECT * FROM products WHERE id = ?'),
  all: db.prepare<[], ProductRow>('SELECT * FROM products ORDER BY id'),
  /** A page: its conditions depend on the filters given (see list), their values come first, then the limit. */
  page: (where: string) => db.prepare<(string | number)[], ProductRow>(`SELECT * FROM products ${where} ORDER BY id LIMIT ?`),
  insert: db.prepare<[id: string, name: string, description: string, category: string, priceCents: number, currency: string, active: 0 | 1, createdAt: string, updatedAt: string]>(
    'INSERT INTO products (id, name, description, category, price_cents, currency, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  ),
  update: db.prepare<[name: string, description: string, category: string, priceCents: number, currency: string, active: 0 | 1, updatedAt: string, id: string]>(
    'UPDATE products SET name = ?, description = ?, category = ?, price_cents = ?, currency = ?, active = ?, updated_at = ? WHERE id = ?',
  ),
  /** Marks a first-start step done; changes nothing (0 changes) when it was done before. */
  meta: db.prepare<[key: string, at: string]>('INSERT INTO catalog_meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING'),
});

export class CatalogStore {
  readonly db: DB;
  readonly #sql: ReturnType<typeof statements>;

  constructor(file: string, { seed = true } = {}) {
    this.db = openDatabase(file, { migrations });
    this.#sql = statements(this.db);
    this.announceOnPublicTopics();
    if (seed) this.seed();
  }

  /**
   * Products stored before they moved to the public namespace (lib/topics.ts) are announced there
   * once, so displays see the whole catalogue without waiting for each product to change. On a new
   * database there is nothing yet: the seed announces its products itself.
   */
  private announceOnPublicTopics(): void {
    this.db.transaction(() => {
      const first = this.#sql.meta.run('public-topics', new Date().toISOString());
      if (first.changes === 0) return;
      for (const row of this.#sql.all.all()) this.announce(toProduct(row));
    })();
  }

  /** Loads the catalogue once, the first time the service starts on an empty database. */
  private seed(): void {
    this.db.transaction(() => {
      const done = this.#sql.meta.run('seeded', new Date().toISOString());
      if (done.changes === 0) return;
      for (const p of seedProducts) {
        if (!this.get(p.id)) this.insert(p);
      }
    })();
  }

  /** undefined when a product with this id already exists. */
  create(input: NewProduct): Product | undefined {
    return this.db.transaction(() => (this.get(input.id) ? undefined : this.insert(input)))();
  }

  update(id: string, changes: ProductChanges): Product | undefined {
    return this.db.transaction(() => {
      const current = this.get(id);
      if (!current) return undefined;
      const next: Product = { ...current, ...stripUndefined(changes), updatedAt: new Date().toISOString() };
      this.#sql.update.run(next.name, next.description, next.category, next.priceCents, next.currency, next.active ? 1 : 0, next.updatedAt, id);
      this.announce(next);
      return next;
    })();
  }

  get(id: string): Product | undefined {
    const row = this.#sql.one.get(id);
    return row && toProduct(row);
  }

  /** One page in id order, plus whether more follow. */
  list({ category, minPriceCents, maxPriceCents, q, active, after, limit }: ProductFilter): { items: Product[]; more: boolean } {
    const where: string[] = [];
    const args: (string | number)[] = [];
    const add = (clause: string, ...values: (string | number)[]) => {
      where.push(clause);
      args.push(...values);
    };
    if (category !== undefined) add('category = ?', category);
    if (minPriceCents !== undefined) add('price_cents >= ?', minPriceCents);
    if (maxPriceCents !== undefined) add('price_cents <= ?', maxPriceCents);
    if (active !== undefined) add('active = ?', active ? 1 : 0);
    if (after !== undefined) add('id > ?', after);
    for (const word of (q ?? '').toLowerCase().split(/\s+/).filter(Boolean)) {
      const like = `%${word.replace(/[\\%_]/g, (m) => `\\${m}`)}%`;
      add("(lower(name) LIKE ? ESCAPE '\\' OR lower(description) LIKE ? ESCAPE '\\')", like, like);
    }
    const rows = this.#sql.page(where.length ? `WHERE ${where.join(' AND ')}` : '').all(...args, limit + 1);
    return { items: rows.slice(0, limit).map(toProduct), more: rows.length > limit };
  }

  private insert(input: NewProduct): Product {
    const now = new Date().toISOString();
    const product: Product = { currency: 'EUR', active: true, ...stripUndefined(input), createdAt: now, updatedAt: now };
    this.#sql.insert.run(product.id, product.name, product.description, product.category, product.priceCents, product.currency, product.active ? 1 : 0, now, now);
    this.announce(product);
    return product;
  }

  /** The change and its event commit together (outbox). */
  private announce(p: Product): void {
    const event = createEvent(
      productChanged,
      { productId: p.id, name: p.name, category: p.category, priceCents: p.priceCents, currency: p.currency, active: p.active, updatedAt: p.updatedAt },
      { source: SOURCE, subject: p.id },
    );
    enqueueEvent(this.db, productTopic(p.id), event, { retain: true });
  }

  close(): void {
    this.db.close();
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
