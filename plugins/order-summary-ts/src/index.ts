// `order-summary-ts`: the `order-summary` read model written in
// TypeScript — one row per order with its customer, item count, total and
// status. Every write is guarded by `last_updated_position`, so applying an
// event a second time changes nothing.

import { type Event, defineProjection, real } from 'refract-sdk';

const SCHEMA = `
CREATE TABLE order_summaries (
    order_id              TEXT PRIMARY KEY,
    customer              TEXT NOT NULL,
    item_count            INTEGER NOT NULL,
    total                 REAL NOT NULL,
    status                TEXT NOT NULL,
    last_updated_position INTEGER NOT NULL
);
CREATE INDEX order_summaries_by_customer ON order_summaries (customer);
CREATE INDEX order_summaries_by_status ON order_summaries (status);
`;

const PLACE = `
INSERT INTO order_summaries (order_id, customer, item_count, total, status, last_updated_position)
VALUES (?1, ?2, ?3, ?4, 'placed', ?5)
ON CONFLICT (order_id) DO NOTHING`;

const ADD_ITEM = `
UPDATE order_summaries
SET item_count = item_count + ?2, total = total + ?3, last_updated_position = ?4
WHERE order_id = ?1 AND last_updated_position < ?4`;

const SET_STATUS = `
UPDATE order_summaries SET status = ?2, last_updated_position = ?3
WHERE order_id = ?1 AND last_updated_position < ?3`;

interface Item {
  product_id: string;
  quantity: number;
  price: number;
}

function text(data: any, field: string): string {
  const v = data?.[field];
  if (v === undefined) throw new Error(`missing field \`${field}\``);
  if (typeof v !== 'string') throw new Error(`invalid type for \`${field}\`: expected a string`);
  return v;
}

function item(data: any): Item {
  const quantity = data?.quantity;
  const price = data?.price;
  if (quantity === undefined) throw new Error('missing field `quantity`');
  if (!Number.isSafeInteger(quantity)) throw new Error('invalid type for `quantity`: expected an integer');
  if (price === undefined) throw new Error('missing field `price`');
  if (typeof price !== 'number') throw new Error('invalid type for `price`: expected a number');
  return { product_id: text(data, 'product_id'), quantity, price };
}

export default defineProjection({
  name: 'order-summary-ts',
  version: '0.1.0',
  eventTypes: ['OrderPlaced', 'ItemAdded', 'OrderPaid', 'OrderShipped', 'OrderCancelled'],
  migrations: [SCHEMA],
  eventVersions: { OrderPlaced: 2 },
  apply(db, event: Event) {
    const order = event.streamId;
    const pos = event.position;
    switch (event.type) {
      case 'OrderPlaced': {
        const who = event.data?.customer;
        if (typeof who !== 'object' || who === null) {
          throw new Error('missing field `customer` (an object with `id` and `name`)');
        }
        const customer = text(who, 'id');
        const raw = event.data.items ?? [];
        if (!Array.isArray(raw)) throw new Error('invalid type for `items`: expected a list');
        const items = raw.map(item);
        // The same sums, in the same order, as the Rust plugin: doubles
        // added from -0.0 up.
        let count = 0;
        let total = -0;
        for (const i of items) {
          count += i.quantity;
          total += i.quantity * i.price;
        }
        db.write(PLACE, [order, customer, count, real(total), pos]);
        break;
      }
      case 'ItemAdded': {
        const i = item(event.data);
        db.write(ADD_ITEM, [order, i.quantity, real(i.quantity * i.price), pos]);
        break;
      }
      case 'OrderPaid':
        text(event.data, 'payment_method');
        db.write(SET_STATUS, [order, 'paid', pos]);
        break;
      case 'OrderShipped':
        text(event.data, 'carrier');
        db.write(SET_STATUS, [order, 'shipped', pos]);
        break;
      case 'OrderCancelled':
        db.write(SET_STATUS, [order, 'cancelled', pos]);
        break;
    }
  },
});
