// The component's side: adapts a handler or an upcaster defined with the
// SDK to the interfaces of wit/ (`decider`, `upcast`), and sends `log` to
// the host. Only `refract-js build` imports this module; a projection's
// adapter, which also needs `sql`, is in `guest-projection.ts` (a world
// without `sql` cannot load a module that imports it).

import * as log from 'refract:plugin/log@0.1.0';
import {
  type Event,
  type Handler,
  type Upcaster,
  Rejection,
  UpcastFailure,
  decideOn,
  fold,
  setLogSink,
  upcastAll,
} from './index.ts';

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
export function versions(v: Record<string, number> | undefined) {
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

/** The `upcast` export of an upcaster. */
export function upcastExport(u: Upcaster) {
  return {
    describe() {
      return { name: u.name, version: u.version, eventType: u.eventType, fromVersion: u.fromVersion };
    },
    upcast(data: string[]) {
      try {
        return upcastAll(u, data);
      } catch (e) {
        const [index, message] = e instanceof UpcastFailure ? [e.index, e.message] : [0, String(e)];
        throw { payload: { index, message } };
      }
    },
  };
}

setLogSink((level, message) => log.write(level, message));
