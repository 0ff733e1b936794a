// The component's side: adapts a projection or a handler defined with the
// SDK to the interfaces of wit/ (`projector`, `decider`), and runs SQL
// through the host. Only `refract-js build` imports this module.

import * as sql from 'refract:plugin/sql@0.1.0';
import * as log from 'refract:plugin/log@0.1.0';
import {
  type Db,
  type Event,
  type Handler,
  type Projection,
  type Row,
  Rejection,
  decideOn,
  failure,
  fold,
  parse,
  setLogSink,
} from './index.ts';
import { Pending, type Param, fromValue, toValue } from './values.ts';
import { type Batch, unpack } from './batch.ts';

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

interface WitEvent {
  position: bigint;
  streamId: string;
  streamVersion: bigint;
  eventType: string;
  data: string;
  metadata: string;
  recordedAt: bigint;
}

/** Declared versions as the WIT carries them. */
function versions(v: Record<string, number> | undefined) {
  return Object.entries(v ?? {}).map(([eventType, version]) => ({ eventType, version }));
}

/** The `decider` export of a command handler. */
export function deciderExport(h: Handler) {
  return {
    describe() {
      return {
        name: h.name,
        version: h.version,
        commandTypes: h.commandTypes,
        eventVersions: versions(h.eventVersions),
      };
    },
    handle(
      command: { commandType: string; streamId: string; data: string; metadata: string },
      snapshot: { version: bigint; state: Uint8Array } | undefined,
      history: WitEvent[],
      keepState: boolean,
    ) {
      const refuse = (code: string, message: string) => ({ payload: { tag: 'rejected', val: { code, message } } });
      let start: unknown;
      if (snapshot === undefined) {
        start = h.initialState();
      } else {
        try {
          start = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(snapshot.state));
        } catch (e) {
          throw { payload: { tag: 'bad-snapshot', val: `cannot read the state: ${(e as Error).message}` } };
        }
      }
      let events: Event[];
      try {
        events = history.map((e) => ({
          position: Number(e.position),
          streamId: e.streamId,
          streamVersion: Number(e.streamVersion),
          type: e.eventType,
          data: JSON.parse(e.data),
          metadata: JSON.parse(e.metadata),
          recordedAt: Number(e.recordedAt),
        }));
      } catch (e) {
        throw refuse('invalid_history', `cannot read the stream's history: ${(e as Error).message}`);
      }
      let data: unknown;
      try {
        data = JSON.parse(command.data);
      } catch (e) {
        throw refuse('invalid_command', `invalid ${command.commandType} command: ${(e as Error).message}`);
      }
      const cmd = {
        type: command.commandType,
        data,
        streamId: command.streamId,
        metadata: JSON.parse(command.metadata),
      };
      try {
        const state = fold(h, start, events);
        const kept = keepState ? new TextEncoder().encode(JSON.stringify(state)) : undefined;
        const decided = decideOn(h, state, cmd).map((e) => ({
          eventType: e.type,
          data: JSON.stringify(e.data ?? null),
        }));
        return { events: decided, state: kept };
      } catch (e) {
        if (e instanceof Rejection) throw refuse(e.code, e.message);
        throw e;
      }
    },
  };
}

setLogSink((level, message) => log.write(level, message));
