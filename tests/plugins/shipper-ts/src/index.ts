// `shipper-ts`: a reactor in TypeScript. Each paid order is shipped: on
// `OrderPaid` it remembers the order and sends `ShipOrder` to the `orders`
// handler, once per order however often the order is paid.

import { defineReactor } from 'refract-sdk';

export default defineReactor({
  name: 'shipper-ts',
  version: '0.1.0',
  eventTypes: ['OrderPaid'],
  migrations: ['CREATE TABLE shipped (order_id TEXT PRIMARY KEY, paid_at INTEGER NOT NULL)'],
  react(db, event, commands) {
    const fresh = db.execute('INSERT INTO shipped VALUES (?, ?) ON CONFLICT (order_id) DO NOTHING', [event.streamId, event.position]);
    if (fresh === 1) commands.send('orders', event.streamId, 'ShipOrder', { carrier: 'ts-post' });
  },
});
