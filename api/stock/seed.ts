// Opening stock for the catalogue's seed products, loaded on the stock service's first start.
import { seedProducts } from '../../lib/seed-products.js';

/** A deterministic spread of quantities (10–55); the wooden train, the demo product, starts at 50. */
export const seedLevels: { productId: string; available: number }[] = seedProducts.map((p, i) => ({
  productId: p.id,
  available: p.id === 'wooden-train' ? 50 : 10 + ((i * 17) % 46),
}));
