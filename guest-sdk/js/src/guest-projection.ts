// The component's side of a projection or a reactor: adapts one defined
// with the SDK to the `projector` or `reactor` interface of wit/ and runs
// its SQL through the host. Only `refract-js build` imports this module.

import * as sql from 'refract:plugin/sql@0.1.0';
import { Commands, type Db, type Event, type Projection, type Reactor, type Row, failure, parse } from './index.ts';
import { Pending, type Param, fromValue, toValue } from './values.ts';
import { type Batch, unpack } from './batch.ts';
import { versions } from './guest.ts';

/** The host's error of an import call, as text. */
function sqlError(e: unknown): Error {
  const p = (e as { payload?: sql.SqlError }).payload;
  if (p && typeof p === 'object' && 'tag' in p) return new Error(`${p.tag === 'refused' ? 'refused' : 'SQL failed'}: ${p.val}`);
  return e instanceof Error ? e : new Error(String(e));
}

function rows(r: sql.Rows): Row[] {
  return r.rows.map((values) => {
    const row: Row = {};
    r.columns.forEach((c, i) => (row[c] = fromValue(values[i])));
    return row;
  });
}

class HostDb implements Db {
  position = 0;
  private pending = new Pending();

  write(statement: string, params: readonly Param[] = []): void {
    if (this.pending.push(this.position, statement, params)) this.flush();
  }

  execute(statement: string, params: readonly Param[] = []): number {
    this.flush();
    try {
      return Number(sql.execute(statement, params.map(toValue)));
    } catch (e) {
      throw sqlError(e);
    }
  }

  query(statement: string, params: readonly Param[] = []): Row[] {
    this.flush();
    try {
      return rows(sql.query(statement, params.map(toValue)));
    } catch (e) {
      throw sqlError(e);
    }
  }

  flush(): void {
    if (this.pending.isEmpty) return;
    const p = this.pending;
    const writes = {
      statements: p.statements,
      positions: BigUint64Array.from(p.positions),
      statementIndices: Uint32Array.from(p.statementIndices),
      params: p.params(),
    };
    try {
      sql.writeQueued(writes);
    } catch (e) {
      throw sqlError(e);
    } finally {
      p.clear();
    }
  }
}

/** Runs `each` on every event of `batch`, its data parsed, then sends the
 *  queued writes; a failure is the batch's, at the event it happened on. */
function eachEvent(batch: Batch, each: (db: HostDb, event: Event) => void): void {
  const db = new HostDb();
  let current = { position: Number(batch.positions[0] ?? 0), type: '' };
  try {
    for (const raw of unpack(batch)) {
      current = raw;
      db.position = raw.position;
      const event: Event = {
        ...raw,
        data: parse('its data', raw.data),
        metadata: parse('its metadata', raw.metadata),
      };
      each(db, event);
    }
    db.flush();
  } catch (e) {
    throw { payload: { position: BigInt(current.position), message: failure(current, e) } };
  }
}

function describe(p: Projection | Reactor) {
  return {
    name: p.name,
    version: p.version,
    eventTypes: p.eventTypes,
    migrations: p.migrations,
    eventVersions: versions(p.eventVersions),
  };
}

/** The `projector` export of a projection. */
export function projectorExport(p: Projection) {
  return {
    describe: () => describe(p),
    apply(batch: Batch) {
      eachEvent(batch, (db, event) => p.apply(db, event));
    },
  };
}

/** The `reactor` export of a reactor. */
export function reactorExport(r: Reactor) {
  return {
    describe: () => describe(r),
    react(batch: Batch) {
      const commands = new Commands();
      const out: { handler: string; commandType: string; streamId: string; data: string; position: bigint }[] = [];
      eachEvent(batch, (db, event) => {
        commands.position = event.position;
        commands.sent.length = 0;
        r.react(db, event, commands);
        for (const c of commands.sent) {
          const data = JSON.stringify(c.data ?? null);
          out.push({ handler: c.handler, commandType: c.type, streamId: c.streamId, data, position: BigInt(c.position) });
        }
      });
      return out;
    },
  };
}
