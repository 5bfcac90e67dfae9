// The stock database, one file shared by levels, reservations and imports (api/stock/store.ts
// composes them): its schema, and the source its announcements carry. Every change and the events
// announcing it commit in one transaction, whichever piece makes it.
import { openDatabase, type DB } from '../../lib/db.js';
import { outboxMigration } from '../../lib/outbox.js';

export const SOURCE = '/woodytoys/stock';

const migrations = [
  `CREATE TABLE levels (
     product_id TEXT PRIMARY KEY,
     available INTEGER NOT NULL CHECK (available >= 0),
     reserved INTEGER NOT NULL CHECK (reserved >= 0),
     updated_at TEXT NOT NULL
   );
   CREATE TABLE reservations (
     order_id TEXT PRIMARY KEY,
     status TEXT NOT NULL CHECK (status IN ('held', 'rejected', 'released', 'sold')),
     items TEXT NOT NULL,
     reason TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE adjustments (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     product_id TEXT NOT NULL,
     delta INTEGER NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE TABLE imports (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     status TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'completed_with_failures')),
     total INTEGER NOT NULL,
     done INTEGER NOT NULL DEFAULT 0,
     failed INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     completed_at TEXT
   );
   CREATE TABLE movements (
     movement_id TEXT PRIMARY KEY,
     import_id TEXT NOT NULL REFERENCES imports (id),
     line INTEGER NOT NULL,
     product_id TEXT NOT NULL,
     delta INTEGER NOT NULL,
     outcome TEXT CHECK (outcome IN ('recorded', 'failed')),
     reason TEXT,
     erp_reference TEXT,
     processed_at TEXT
   );
   CREATE INDEX movements_import ON movements (import_id, line);
   CREATE TABLE stock_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   ${outboxMigration}
   -- Level events are retained: only the newest unsent one per product matters (see announceLevel).
   CREATE INDEX outbox_unsent_topic ON outbox (topic) WHERE sent_at IS NULL;`,
  // Parked movements: the ERP could not be reached for all their attempts; a replay resumes them.
  `ALTER TABLE imports ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE movements ADD COLUMN parked_reason TEXT;`,
];

export const openStockDatabase = (file: string): DB => openDatabase(file, { migrations });
