import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProjectionTest, event } from 'refract-sdk/testing';
import plugin from '../src/index.ts';

test('sums per stream', async () => {
  const t = await ProjectionTest.create(plugin);
  t.apply([event(1, 'a', 1, 'Happened', { amount: 2 }), event(2, 'a', 2, 'Happened', { amount: 3 })]);
  assert.deepEqual(t.query("SELECT total FROM totals WHERE stream_id = 'a'"), [{ total: 5 }]);
});
