// `__NAME__`: a refract upcaster in TypeScript. `Happened` version 1 called
// its number `amount`; version 2 calls it `quantity`. Plugins that declare
// they read `Happened` at version 2 get old events rewritten by this on the
// way in; the log keeps what was appended. `refract dev` builds and
// hot-reloads it on save; `node SDK/bin/refract-js.mjs test .` runs its
// tests.

import { defineUpcaster } from 'refract-sdk';

interface V1 {
  amount: number;
  [member: string]: unknown;
}

interface V2 {
  quantity: number;
  [member: string]: unknown;
}

// It must be deterministic: read models are rebuilt through it.
export default defineUpcaster<V1, V2>({
  name: '__NAME__',
  version: '0.1.0',
  eventType: 'Happened',
  fromVersion: 1,
  upcast({ amount, ...rest }) {
    if (!Number.isSafeInteger(amount)) throw new Error('`amount` must be an integer');
    return { ...rest, quantity: amount };
  },
});
