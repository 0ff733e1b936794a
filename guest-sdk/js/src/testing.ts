// Tests of plugins in Node, with no host: projections and reactors against
// an in-memory SQLite (sql.js), handlers as given / when / then.
//
//   const t = await ProjectionTest.create(summary);
//   t.apply([event(1, 'order-1', 1, 'OrderPlaced', { customer: 'ada', items: [] })]);
//   assert.deepEqual(t.query('SELECT customer FROM order_summaries'), [{ customer: 'ada' }]);
//
//   given(orders, [placed]).when('PayOrder', { payment_method: 'card' }).thenEvents([...]);

import assert from 'node:assert/strict';
import initSqlJs from 'sql.js';
import { Commands, type Db, type Event, type Handler, type NewEvent, type Projection, type Reactor, type Row, type SentCommand, Rejection, failure, run } from './index.ts';
import { type Param, fromValue, toValue } from './values.ts';

/** An event for a test: data and metadata as values, not text. */
export function event(position: number, streamId: string, streamVersion: number, type: string, data: unknown, metadata: Record<string, unknown> = {}): Event {
  return { position, streamId, streamVersion, type, data, metadata, recordedAt: 0 };
}

/** Statements the host would refuse in a plugin. */
const REFUSED = /^\s*(ATTACH|DETACH|BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|VACUUM)\b/i;

type SqlJsDb = {
  run(sql: string, params?: unknown[]): void;
  exec(sql: string): unknown;
  prepare(sql: string): { bind(p: unknown[]): void; step(): boolean; getColumnNames(): string[]; get(): unknown[]; free(): void };
  getRowsModified(): number;
};

/** Parameters as sql.js binds them: each converted as the host would
 *  (`toValue`), then as JavaScript reads it back (`fromValue`). */
function bind(params: readonly Param[]): unknown[] {
  return params.map((p) => fromValue(toValue(p)));
}

class NativeDb implements Db {
  constructor(private db: SqlJsDb) {}

  private check(sql: string): void {
    if (REFUSED.test(sql)) throw new Error(`refused: ${sql.trim().split(/\s+/)[0]} is not allowed in a plugin`);
  }

  write(sql: string, params: readonly Param[] = []): void {
    this.execute(sql, params);
  }

  execute(sql: string, params: readonly Param[] = []): number {
    this.check(sql);
    this.db.run(sql, bind(params));
    return this.db.getRowsModified();
  }

  query(sql: string, params: readonly Param[] = []): Row[] {
    this.check(sql);
    const stmt = this.db.prepare(sql);
    try {
      stmt.bind(bind(params));
      const out: Row[] = [];
      const columns = stmt.getColumnNames();
      while (stmt.step()) {
        const values = stmt.get();
        const row: Row = {};
        columns.forEach((c, i) => {
          const v = values[i];
          row[c] = typeof v === 'bigint' ? fromValue({ tag: 'integer', val: v }) : (v as Row[string]);
        });
        out.push(row);
      }
      return out;
    } finally {
      stmt.free();
    }
  }
}

/** Why a batch failed: the event's position and the message the host
 *  would show. */
export class ApplyError extends Error {
  constructor(
    readonly position: number,
    message: string,
  ) {
    super(message);
  }
}

/** An in-memory SQLite with a plugin's migrations applied. */
async function database(migrations: string[]): Promise<SqlJsDb> {
  const SQL = await initSqlJs();
  const raw = new SQL.Database() as unknown as SqlJsDb;
  for (const m of migrations) raw.exec(m);
  return raw;
}

/** Runs `each` on the events of `wanted` types in one transaction; throws
 *  an `ApplyError` naming the failing event after rolling back. */
function batch(raw: SqlJsDb, wanted: string[], events: Event[], each: (e: Event) => void): void {
  raw.exec('BEGIN');
  for (const e of events) {
    if (wanted.length > 0 && !wanted.includes(e.type)) continue;
    try {
      // Data goes through JSON as it does in the host.
      each({ ...e, data: JSON.parse(JSON.stringify(e.data)), metadata: JSON.parse(JSON.stringify(e.metadata)) });
    } catch (err) {
      raw.exec('ROLLBACK');
      throw new ApplyError(e.position, failure(e, err));
    }
  }
  raw.exec('COMMIT');
}

/** A projection run natively: its migrations applied to an in-memory
 *  SQLite; `apply` is one transaction, as in the host. */
export class ProjectionTest {
  private constructor(
    readonly projection: Projection,
    private raw: SqlJsDb,
    readonly db: Db,
  ) {}

  static async create(projection: Projection): Promise<ProjectionTest> {
    const raw = await database(projection.migrations);
    return new ProjectionTest(projection, raw, new NativeDb(raw));
  }

  /** Applies `events` in one transaction; throws an `ApplyError` naming the
   *  failing event after rolling the batch back. */
  apply(events: Event[]): void {
    batch(this.raw, this.projection.eventTypes, events, (e) => this.projection.apply(this.db, e));
  }

  /** Runs a query on the read model. */
  query(sql: string, params: readonly Param[] = []): Row[] {
    return this.db.query(sql, params);
  }
}

/** A reactor run natively, as a projection is: `react` is one transaction
 *  and returns the commands the batch sends (none when it fails). */
export class ReactorTest {
  private constructor(
    readonly reactor: Reactor,
    private raw: SqlJsDb,
    readonly db: Db,
  ) {}

  static async create(reactor: Reactor): Promise<ReactorTest> {
    const raw = await database(reactor.migrations);
    return new ReactorTest(reactor, raw, new NativeDb(raw));
  }

  /** Reacts to `events` in one transaction: the commands sent, their data
   *  through JSON as the host sends it. */
  react(events: Event[]): SentCommand[] {
    const commands = new Commands();
    batch(this.raw, this.reactor.eventTypes, events, (e) => {
      commands.position = e.position;
      this.reactor.react(this.db, e, commands);
    });
    return commands.sent.map((c) => ({ ...c, data: JSON.parse(JSON.stringify(c.data ?? null)) }));
  }

  /** Runs a query on its tables. */
  query(sql: string, params: readonly Param[] = []): Row[] {
    return this.db.query(sql, params);
  }
}

/** What a handler decided: events, or a rejection. */
export class Decision {
  constructor(
    readonly events: NewEvent[] | undefined,
    readonly rejection: Rejection | undefined,
  ) {}

  /** Asserts the handler appended exactly `expected`. */
  thenEvents(expected: NewEvent[]): void {
    assert.equal(this.rejection, undefined, `expected events, got rejection ${this.rejection?.code}: ${this.rejection?.message}`);
    assert.deepEqual(this.events, expected);
  }

  /** Asserts the handler refused with `code`. */
  thenRejected(code: string): Rejection {
    assert.ok(this.rejection, `expected rejection ${code}, got events ${JSON.stringify(this.events)}`);
    assert.equal(this.rejection.code, code, this.rejection.message);
    return this.rejection;
  }
}

/** A stream's history (as `{type, data}` events, or full events), to send a
 *  command against. */
export function given(handler: Handler, history: (NewEvent | Event)[]) {
  const events: Event[] = history.map((e, i) =>
    'position' in e ? e : event(i + 1, 'stream-1', i + 1, e.type, e.data),
  );
  return {
    when(type: string, data: unknown, streamId = 'stream-1'): Decision {
      const command = { type, data: JSON.parse(JSON.stringify(data)), streamId, metadata: {} };
      try {
        return new Decision(JSON.parse(JSON.stringify(run(handler, command, events))), undefined);
      } catch (e) {
        if (e instanceof Rejection) return new Decision(undefined, e);
        throw e;
      }
    },
  };
}
