import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReactorTest, event } from 'refract-sdk/testing';
import shipper from '../src/index.ts';

test('a paid order is shipped once', async () => {
  const t = await ReactorTest.create(shipper);
  const paid = (position: number, order: string) => event(position, order, 2, 'OrderPaid', { payment_method: 'card' });
  assert.deepEqual(t.react([paid(3, 'o-1'), event(4, 'o-1', 3, 'ItemAdded', {}), paid(5, 'o-2')]), [
    { handler: 'orders', type: 'ShipOrder', streamId: 'o-1', data: { carrier: 'ts-post' }, position: 3 },
    { handler: 'orders', type: 'ShipOrder', streamId: 'o-2', data: { carrier: 'ts-post' }, position: 5 },
  ]);
  assert.deepEqual(t.react([paid(9, 'o-1')]), []);
  assert.deepEqual(t.query('SELECT order_id, paid_at FROM shipped ORDER BY order_id'), [
    { order_id: 'o-1', paid_at: 3 },
    { order_id: 'o-2', paid_at: 5 },
  ]);
});
