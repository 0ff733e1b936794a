// `order-placed-v2-ts`: the `order-placed-v2` upcaster in TypeScript.
// `OrderPlaced` version 1 had `customer` as one string; version 2 has
// `{ "id", "name" }`, and version 1 had no separate name, so the string
// becomes both. The other members are kept as they are.

import { defineUpcaster } from 'refract-sdk';

interface V1 {
  customer: string;
  [member: string]: unknown;
}

interface V2 {
  customer: { id: string; name: string };
  [member: string]: unknown;
}

export default defineUpcaster<V1, V2>({
  name: 'order-placed-v2-ts',
  version: '0.1.0',
  eventType: 'OrderPlaced',
  fromVersion: 1,
  upcast(data) {
    if (typeof data.customer !== 'string') {
      throw new Error('invalid type for `customer`: expected a string (version 1)');
    }
    return { ...data, customer: { id: data.customer, name: data.customer } };
  },
});
