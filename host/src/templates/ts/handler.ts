// `__NAME__`: a refract command handler in TypeScript. `refract dev` builds
// and hot-reloads it on save; `node SDK/bin/refract-js.mjs test .` runs its
// tests.

import { defineHandler, reject } from 'refract-sdk';

export default defineHandler({
  name: '__NAME__',
  version: '0.1.0',
  commandTypes: ['Start'],
  initialState: () => ({ started: false }),
  evolve: (state, event) => (event.type === 'Started' ? { started: true } : state),
  decide(state, command) {
    if (state.started) throw reject('already_started', 'it has already started');
    return [{ type: 'Started', data: {} }];
  },
});
