// A projection built with componentize-js's default features, so the
// component imports `wasi:http`: it must load and run like any other.
// It writes what it prints, so a test sees its stdout reach the log.

import { defineProjection } from 'refract-sdk';

export default defineProjection({
  name: 'http-js',
  version: '0.1.0',
  eventTypes: [],
  migrations: ['CREATE TABLE seen (position INTEGER PRIMARY KEY, type TEXT NOT NULL)'],
  apply(db, event) {
    if (event.type === 'Shout') console.log(`shouting ${event.data.word}`);
    if (event.type === 'Throw') throw new Error(`asked to throw at ${event.position}`);
    db.write('INSERT INTO seen VALUES (?, ?)', [event.position, event.type]);
  },
});
