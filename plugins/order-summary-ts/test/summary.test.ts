import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProjectionTest, event } from 'refract-sdk/testing';
import summary from '../src/index.ts';

const placed = (pos: number, order: string) =>
  event(pos, order, 1, 'OrderPlaced', { customer: { id: 'ada', name: 'Ada' }, items: [{ product_id: 'p1', quantity: 2, price: 5.0 }] });

test('a lifecycle updates one row', async () => {
  const t = await ProjectionTest.create(summary);
  t.apply([
    placed(1, 'order-1'),
    event(2, 'order-1', 2, 'ItemAdded', { product_id: 'p2', quantity: 1, price: 2.5 }),
    event(3, 'order-1', 3, 'OrderPaid', { payment_method: 'card' }),
    event(4, 'order-1', 4, 'OrderShipped', { carrier: 'dhl' }),
  ]);
  assert.deepEqual(t.query('SELECT * FROM order_summaries'), [
    { order_id: 'order-1', customer: 'ada', item_count: 3, total: 12.5, status: 'shipped', last_updated_position: 4 },
  ]);
});

test('replaying an event changes nothing', async () => {
  const t = await ProjectionTest.create(summary);
  const add = event(2, 'order-1', 2, 'ItemAdded', { product_id: 'p', quantity: 1, price: 1.0 });
  t.apply([placed(1, 'order-1'), add]);
  t.apply([add]);
  assert.deepEqual(t.query('SELECT item_count FROM order_summaries'), [{ item_count: 3 }]);
});

test('bad data fails the batch and names the event', async () => {
  const t = await ProjectionTest.create(summary);
  assert.throws(
    () => t.apply([placed(1, 'order-1'), event(2, 'order-2', 1, 'OrderPlaced', { items: [] })]),
    (e: any) => e.position === 2 && /event 2/.test(e.message) && /customer/.test(e.message),
  );
  assert.deepEqual(t.query('SELECT * FROM order_summaries'), [], 'the whole batch rolls back');
});
