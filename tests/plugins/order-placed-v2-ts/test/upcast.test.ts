import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpcastFailure, upcastAll } from 'refract-sdk';
import upcaster from '../src/index.ts';

test('the customer string becomes id and name and the rest is kept', () => {
  const out = upcastAll(upcaster, ['{"customer":"ada \\"the\\" first","items":[{"product_id":"p","quantity":1,"price":2.5}]}']);
  assert.deepEqual(JSON.parse(out[0]), {
    customer: { id: 'ada "the" first', name: 'ada "the" first' },
    items: [{ product_id: 'p', quantity: 1, price: 2.5 }],
  });
});

test('data without a customer string is refused with its index', () => {
  assert.throws(
    () => upcastAll(upcaster, ['{"customer":"a"}', '{"customer":{"id":"b"}}']),
    (e: unknown) => e instanceof UpcastFailure && e.index === 1 && /customer/.test(e.message),
  );
});
