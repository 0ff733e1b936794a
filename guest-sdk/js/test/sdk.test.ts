import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Commands, UpcastFailure, defineHandler, defineProjection, defineReactor, defineUpcaster, int, real, reject, upcastAll } from 'refract-sdk';
import { ApplyError, ProjectionTest, ReactorTest, event, given } from 'refract-sdk/testing';
import { Pending, toValue } from '../src/values.ts';
import { unpack } from '../src/batch.ts';

test('parameters pack as wit/sql.wit encodes them', () => {
  const p = new Pending();
  p.push(7, 'INSERT INTO t VALUES (?, ?, ?, ?, ?)', [null, 5, 1.5, 'é', new Uint8Array([9])]);
  p.push(8, 'INSERT INTO t VALUES (?, ?, ?, ?, ?)', [true, real(2), int(3), -1n, undefined]);
  assert.deepEqual(p.statements, ['INSERT INTO t VALUES (?, ?, ?, ?, ?)']);
  assert.deepEqual(p.positions, [7n, 8n]);
  assert.deepEqual(p.statementIndices, [0, 0]);
  const b = p.params();
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 0;
  assert.equal(v.getUint32(at, true), 5); at += 4;
  assert.equal(b[at++], 0);
  assert.equal(b[at++], 1); assert.equal(v.getBigInt64(at, true), 5n); at += 8;
  assert.equal(b[at++], 2); assert.equal(v.getFloat64(at, true), 1.5); at += 8;
  assert.equal(b[at++], 3); assert.equal(v.getUint32(at, true), 2); at += 4;
  assert.deepEqual([...b.subarray(at, at + 2)], [0xc3, 0xa9]); at += 2;
  assert.equal(b[at++], 4); assert.equal(v.getUint32(at, true), 1); at += 4;
  assert.equal(b[at++], 9);
  assert.equal(v.getUint32(at, true), 5); at += 4;
  assert.equal(b[at++], 1); assert.equal(v.getBigInt64(at, true), 1n); at += 8;
  assert.equal(b[at++], 2); assert.equal(v.getFloat64(at, true), 2); at += 8;
  assert.equal(b[at++], 1); assert.equal(v.getBigInt64(at, true), 3n); at += 8;
  assert.equal(b[at++], 1); assert.equal(v.getBigInt64(at, true), -1n); at += 8;
  assert.equal(b[at++], 0);
  assert.equal(at, b.length);
});

test('numbers past what a double holds exactly bind as REAL; bigints past i64 are refused', () => {
  assert.deepEqual(toValue(2 ** 53), { tag: 'real', val: 2 ** 53 });
  assert.deepEqual(toValue(9.600000000000001), { tag: 'real', val: 9.600000000000001 });
  assert.throws(() => toValue(2n ** 63n), /64-bit/);
  assert.throws(() => toValue({} as any), /cannot bind/);
  assert.throws(() => int(1.5), /not an integer/);
});

test('a packed batch unpacks into its events, multi-byte text included', () => {
  const fields = [['s-1', 'A', '{"x":"ü"}', '{}'], ['s-2', 'B', '{}', '{"k":1}']];
  const enc = new TextEncoder();
  const batch = {
    positions: [3n, 4n],
    streamVersions: [1n, 1n],
    recordedAt: [10n, 11n],
    lengths: fields.flat().map((f) => enc.encode(f).length),
    text: fields.flat().join(''),
  };
  const events = [...unpack(batch)];
  assert.deepEqual(events.map((e) => [e.position, e.streamId, e.type, e.data, e.metadata]), [
    [3, 's-1', 'A', '{"x":"ü"}', '{}'],
    [4, 's-2', 'B', '{}', '{"k":1}'],
  ]);
  assert.throws(() => [...unpack({ ...batch, lengths: [...batch.lengths.slice(0, 7), 99] })], /runs past its text/);
  assert.throws(() => [...unpack({ ...batch, recordedAt: [1n] })], /differ in length/);
});

const counter = defineProjection({
  name: 'counter',
  version: '1',
  eventTypes: ['Counted'],
  migrations: ['CREATE TABLE counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL, last REAL)'],
  apply(db, e) {
    if (typeof e.data.by !== 'number') throw new Error('missing field `by`');
    db.write('INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (stream) DO UPDATE SET n = n + excluded.n, last = excluded.last', [e.streamId, e.data.by, real(e.data.by)]);
  },
});

test('a projection test applies a batch in one transaction and names a failing event', async () => {
  const t = await ProjectionTest.create(counter);
  t.apply([event(1, 'a', 1, 'Counted', { by: 2 }), event(2, 'a', 2, 'Other', {}), event(3, 'b', 1, 'Counted', { by: 1 })]);
  assert.deepEqual(t.query('SELECT * FROM counts ORDER BY stream'), [
    { stream: 'a', n: 2, last: 2 },
    { stream: 'b', n: 1, last: 1 },
  ]);
  assert.throws(() => t.apply([event(4, 'a', 3, 'Counted', { by: 5 }), event(5, 'c', 1, 'Counted', {})]), (e: any) => e.position === 5 && /event 5 \(Counted\): missing field `by`/.test(e.message));
  assert.deepEqual(t.query('SELECT n FROM counts WHERE stream = ?', ['a']), [{ n: 2 }], 'the failed batch rolled back');
  assert.throws(() => t.db.execute('ATTACH DATABASE x AS y'), /refused/);
});

const door = defineHandler({
  name: 'door',
  version: '1',
  commandTypes: ['Open', 'Close'],
  initialState: () => ({ open: false }),
  evolve: (s, e) => ({ open: e.type === 'Opened' ? true : e.type === 'Closed' ? false : s.open }),
  decide(s, c) {
    if (c.type === 'Open') {
      if (s.open) throw reject('already_open', 'the door is open');
      return [{ type: 'Opened', data: { by: c.data.by } }];
    }
    if (!s.open) throw reject('already_closed', 'the door is closed');
    return [{ type: 'Closed', data: {} }];
  },
});

test('given / when / then', () => {
  given(door, []).when('Open', { by: 'ada' }).thenEvents([{ type: 'Opened', data: { by: 'ada' } }]);
  given(door, [{ type: 'Opened', data: {} }]).when('Open', {}).thenRejected('already_open');
  given(door, [{ type: 'Opened', data: {} }]).when('Close', {}).thenEvents([{ type: 'Closed', data: {} }]);
  assert.throws(() => given(door, []).when('Open', {}).thenRejected('already_open'), /expected rejection/);
});

test('an upcaster rewrites each event and names the one it refuses', () => {
  const rename = defineUpcaster<{ name: string; n?: number }, { full_name: string; n?: number }>({
    name: 'rename',
    version: '1',
    eventType: 'Named',
    fromVersion: 1,
    upcast: ({ name, ...rest }) => {
      if (typeof name !== 'string') throw new Error('missing field `name`');
      return { full_name: name, ...rest };
    },
  });
  assert.equal(rename.kind, 'upcaster');
  assert.deepEqual(upcastAll(rename, ['{"name":"é","n":2}', '{"name":"b"}']), ['{"full_name":"é","n":2}', '{"full_name":"b"}']);
  assert.throws(
    () => upcastAll(rename, ['{"name":"a"}', '{"n":1}']),
    (e: unknown) => e instanceof UpcastFailure && e.index === 1 && /missing field `name`/.test(e.message),
  );
  assert.throws(
    () => upcastAll(rename, ['{"name":"a"}', 'not json']),
    (e: unknown) => e instanceof UpcastFailure && e.index === 1 && /cannot read/.test(e.message),
  );
  const nothing = defineUpcaster({ name: 'x', version: '1', eventType: 'T', fromVersion: 1, upcast: () => undefined });
  assert.throws(() => upcastAll(nothing, ['{}']), /no JSON value/);
  assert.throws(() => defineUpcaster({ name: 'x', version: '1', eventType: 'T', fromVersion: 0, upcast: (d) => d }), RangeError);
});

test('a reactor sends nothing from a batch that fails, and a command needs its parts', async () => {
  const r = defineReactor({
    name: 'r',
    version: '1',
    eventTypes: [],
    migrations: ['CREATE TABLE seen (p INTEGER PRIMARY KEY)'],
    react(db, e, commands) {
      db.execute('INSERT INTO seen VALUES (?)', [e.position]);
      if (e.type === 'Bad') throw new Error('bad event');
      commands.send('h', e.streamId, 'Do', { at: e.position });
    },
  });
  const t = await ReactorTest.create(r);
  assert.throws(
    () => t.react([event(1, 's', 1, 'Ok', {}), event(2, 's', 2, 'Bad', {})]),
    (e: unknown) => e instanceof ApplyError && e.position === 2 && /bad event/.test(e.message),
  );
  assert.deepEqual(t.query('SELECT p FROM seen'), []);
  assert.deepEqual(t.react([event(1, 's', 1, 'Ok', {})]), [{ handler: 'h', type: 'Do', streamId: 's', data: { at: 1 }, position: 1 }]);
  assert.throws(() => new Commands().send('', 's', 'Do'), /non-empty handler/);
});
