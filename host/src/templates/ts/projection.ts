// `__NAME__`: a refract projection in TypeScript. `refract dev` builds and
// hot-reloads it on save; `node SDK/bin/refract-js.mjs test .` runs its tests.

import { defineProjection } from 'refract-sdk';

export default defineProjection({
  name: '__NAME__',
  version: '0.1.0',
  eventTypes: ['Happened'],
  migrations: ['CREATE TABLE totals (stream_id TEXT PRIMARY KEY, total INTEGER NOT NULL)'],
  apply(db, event) {
    const amount = event.data.amount;
    if (!Number.isSafeInteger(amount)) throw new Error('`amount` must be an integer');
    db.write(
      `INSERT INTO totals (stream_id, total) VALUES (?1, ?2)
       ON CONFLICT (stream_id) DO UPDATE SET total = total + excluded.total`,
      [event.streamId, amount],
    );
  },
});
