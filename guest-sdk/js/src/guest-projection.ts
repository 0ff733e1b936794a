// The component's side of a projection: adapts a projection defined with
// the SDK to the `projector` interface of wit/ and runs its SQL through the
// host. Only `refract-js build` imports this module.

import * as sql from 'refract:plugin/sql@0.1.0';
import { type Db, type Event, type Projection, type Row, failure, parse } from './index.ts';
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

/** The `projector` export of a projection. */
export function projectorExport(p: Projection) {
  return {
    describe() {
      return {
        name: p.name,
        version: p.version,
        eventTypes: p.eventTypes,
        migrations: p.migrations,
        eventVersions: versions(p.eventVersions),
      };
    },
    apply(batch: Batch) {
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
          p.apply(db, event);
        }
        db.flush();
      } catch (e) {
        throw { payload: { position: BigInt(current.position), message: failure(current, e) } };
      }
    },
  };
}
