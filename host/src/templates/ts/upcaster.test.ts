import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpcastFailure, upcastAll } from 'refract-sdk';
import plugin from '../src/index.ts';

test('amount becomes quantity and the rest is kept', () => {
  assert.deepEqual(upcastAll(plugin, ['{"amount":3,"note":"x"}']).map((d) => JSON.parse(d)), [{ quantity: 3, note: 'x' }]);
  assert.throws(() => upcastAll(plugin, ['{"amount":3}', '{}']), (e: unknown) => e instanceof UpcastFailure && e.index === 1);
});
