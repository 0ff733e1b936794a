// refract's SDK for plugins written in TypeScript or JavaScript: the same
// shape as the Rust SDK. A projection describes itself and applies one
// event at a time through `db`; a command handler folds a stream's history
// with `evolve` and `decide`s on a command; a reactor answers events with
// commands; an upcaster rewrites old events. `refract-js build` turns a
// plugin into a component; `refract-js test` runs its tests in Node with
// no host (see `refract-sdk/testing`).

export { Real, Int, real, int } from './values.ts';
export type { Param, Column } from './values.ts';
import type { Param, Column } from './values.ts';

/** One event from the log, its data parsed. */
export interface Event<D = any> {
  /** Global position: from 1, gapless, in commit order. */
  position: number;
  /** The stream (aggregate) it belongs to, for example `order-42`. */
  streamId: string;
  /** Version of the stream after this event: 1, 2, 3, ... */
  streamVersion: number;
  /** The event's type, for example `OrderPlaced`. */
  type: string;
  /** The payload, parsed from its JSON. */
  data: D;
  /** Metadata appended with the event, parsed; `{}` when none was given. */
  metadata: Record<string, unknown>;
  /** When the host recorded it: milliseconds since the Unix epoch. */
  recordedAt: number;
}

/** A row of a query's result, by column name. */
export type Row = Record<string, Column>;

/** The projection's own SQLite database. Writes run in the transaction of
 *  the batch being applied: a failing event rolls all of it back. */
export interface Db {
  /** Queues a statement that returns no rows; it runs in order, before any
   *  later `execute` or `query`, while the plugin goes on. The fastest way
   *  to write. */
  write(sql: string, params?: readonly Param[]): void;
  /** Runs a statement that returns no rows; the number of rows changed. */
  execute(sql: string, params?: readonly Param[]): number;
  /** Runs a query; its rows. */
  query(sql: string, params?: readonly Param[]): Row[];
}

/** A projection: events in, rows of its own tables out. */
export interface ProjectionDefinition {
  /** 1-64 characters of a-z, 0-9, `-` and `_`; names its database and routes. */
  name: string;
  /** A version label for people. */
  version: string;
  /** The event types it wants; empty for every event. */
  eventTypes: string[];
  /** Schema migrations, in order; append, never edit one that shipped. */
  migrations: string[];
  /** The schema version of each event type it reads (`{ OrderPlaced: 2 }`):
   *  the host upcasts older events before they arrive. */
  eventVersions?: Record<string, number>;
  /** Applies one event. Throw to fail the batch at this event. */
  apply(db: Db, event: Event): void;
}

/** A command: its type and parsed data. */
export interface Command<D = any> {
  type: string;
  data: D;
  /** The stream the command targets. */
  streamId: string;
  /** Metadata sent with the command, parsed. */
  metadata: Record<string, unknown>;
}

/** An event a handler decides to append. */
export interface NewEvent<D = unknown> {
  type: string;
  data: D;
}

/** A command handler in the decider shape. */
export interface HandlerDefinition<S = any> {
  name: string;
  version: string;
  /** The command types it accepts. */
  commandTypes: string[];
  /** The schema version of each event type it reads and writes
   *  (`{ OrderPlaced: 2 }`): older events in a history arrive upcast, and
   *  its events of these types are recorded at these versions. */
  eventVersions?: Record<string, number>;
  /** The state of a stream with no events. It must survive
   *  `JSON.stringify` and `JSON.parse` unchanged: the host keeps it as a
   *  snapshot of long streams. */
  initialState(): S;
  /** Folds one past event into the state. */
  evolve(state: S, event: Event): S;
  /** The events to append (possibly none); throw `reject(...)` to refuse. */
  decide(state: S, command: Command): NewEvent[];
}

/** A command a reactor sends: to a command handler, for a stream, in
 *  answer to the event at `position`. */
export interface SentCommand {
  handler: string;
  type: string;
  streamId: string;
  data: unknown;
  position: number;
}

/** The commands a reactor sends while it reacts to one event. */
export class Commands {
  readonly sent: SentCommand[] = [];
  /** The event being reacted to (set by the SDK). */
  position = 0;

  /** Sends command `type` with `data` to `handler`, for stream `streamId`. */
  send(handler: string, streamId: string, type: string, data: unknown = {}): void {
    for (const [what, v] of [['handler', handler], ['streamId', streamId], ['type', type]] as const) {
      if (typeof v !== 'string' || v === '') throw new TypeError(`a command needs a non-empty ${what}`);
    }
    this.sent.push({ handler, type, streamId, data, position: this.position });
  }
}

/** A reactor (a process manager, a saga): reads events in log order like a
 *  projection, remembers what it must in its own tables, and answers
 *  events with commands. The host records a batch's commands with its
 *  writes and checkpoint and sends each exactly once, in order. */
export interface ReactorDefinition {
  /** 1-64 characters of a-z, 0-9, `-` and `_`; names its database and routes. */
  name: string;
  version: string;
  /** The event types it wants; empty for every event. */
  eventTypes: string[];
  /** Migrations of its own tables, in order. */
  migrations: string[];
  /** The schema version of each event type it reads (`{ OrderPlaced: 2 }`). */
  eventVersions?: Record<string, number>;
  /** Reacts to one event: writes through `db`, sends through `commands`.
   *  Throw to fail the batch at this event (nothing of it is sent). */
  react(db: Db, event: Event, commands: Commands): void;
}

/** An upcaster: rewrites the data of one event type from one version of
 *  its schema to the next. It sees nothing but the data and must be
 *  deterministic: read models are rebuilt through it. */
export interface UpcasterDefinition<Old = any, New = unknown> {
  name: string;
  version: string;
  /** The event type it rewrites. */
  eventType: string;
  /** The version it reads; it writes `fromVersion + 1`. */
  fromVersion: number;
  /** One event's data at `fromVersion`, parsed, → its data at the next
   *  version. Throw to refuse it (the error names the event). */
  upcast(data: Old): New;
}

/** A refused command: a stable code and a sentence; the client gets 422. */
export class Rejection extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'Rejection';
  }
}

/** Refuses the command: `throw reject('already_paid', 'order already paid')`. */
export function reject(code: string, message: string): Rejection {
  return new Rejection(code, message);
}

export interface Projection extends ProjectionDefinition {
  kind: 'projection';
}
export interface Handler<S = any> extends HandlerDefinition<S> {
  kind: 'command-handler';
}
export interface Reactor extends ReactorDefinition {
  kind: 'reactor';
}
export interface Upcaster<Old = any, New = unknown> extends UpcasterDefinition<Old, New> {
  kind: 'upcaster';
}

/** Declares a projection; make it the module's default export. */
export function defineProjection(p: ProjectionDefinition): Projection {
  return { ...p, kind: 'projection' };
}

/** Declares a command handler; make it the module's default export. */
export function defineHandler<S>(h: HandlerDefinition<S>): Handler<S> {
  return { ...h, kind: 'command-handler' };
}

/** Declares a reactor; make it the module's default export. */
export function defineReactor(r: ReactorDefinition): Reactor {
  return { ...r, kind: 'reactor' };
}

/** Declares an upcaster; make it the module's default export. */
export function defineUpcaster<Old = any, New = unknown>(u: UpcasterDefinition<Old, New>): Upcaster<Old, New> {
  if (!Number.isInteger(u.fromVersion) || u.fromVersion < 1) {
    throw new RangeError(`fromVersion must be a whole number from 1, got ${u.fromVersion}`);
  }
  return { ...u, kind: 'upcaster' };
}

/** Why an upcaster refused one of the data it was given. */
export class UpcastFailure extends Error {
  constructor(
    /** Which of the data (an index into the list). */
    readonly index: number,
    message: string,
  ) {
    super(message);
    this.name = 'UpcastFailure';
  }
}

/** Rewrites each of `data` (JSON text at the upcaster's version) to the
 *  next version; the first failure is thrown as an `UpcastFailure` naming
 *  its index. The component and tests both run upcasters through it. */
export function upcastAll(u: UpcasterDefinition, data: readonly string[]): string[] {
  return data.map((text, index) => {
    let old: unknown;
    try {
      old = JSON.parse(text);
    } catch (e) {
      throw new UpcastFailure(index, `cannot read: ${(e as Error).message}`);
    }
    let out: string | undefined;
    try {
      out = JSON.stringify(u.upcast(old));
    } catch (e) {
      throw new UpcastFailure(index, e instanceof Error ? e.message : String(e));
    }
    // `undefined` (or a function) has no JSON: not an event's data.
    if (out === undefined) throw new UpcastFailure(index, 'upcast returned no JSON value');
    return out;
  });
}

/** Why an event could not be applied, naming it. */
export function failure(event: Pick<Event, 'position' | 'type'>, e: unknown): string {
  const why = e instanceof Error ? e.message : String(e);
  return `event ${event.position} (${event.type}): ${why}`;
}

/** Parses an event's or a command's JSON, naming what it was. */
export function parse(what: string, text: string): any {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not JSON: ${(e as Error).message}`);
  }
}

/** Folds `history` and decides on `command`: the SDK's run of a handler,
 *  shared by the component and the native test helpers. */
export function run<S>(h: HandlerDefinition<S>, command: Command, history: Event[]): NewEvent[] {
  return decideOn(h, fold(h, h.initialState(), history), command);
}

/** Folds `history` into `state`. */
export function fold<S>(h: HandlerDefinition<S>, state: S, history: Event[]): S {
  for (const e of history) state = h.evolve(state, e);
  return state;
}

/** Decides on `command` given a folded `state`. */
export function decideOn<S>(h: HandlerDefinition<S>, state: S, command: Command): NewEvent[] {
  const events = h.decide(state, command);
  if (!Array.isArray(events)) throw new TypeError(`decide must return an array of events, got ${typeof events}`);
  for (const e of events) {
    if (!e || typeof e.type !== 'string' || e.type === '') {
      throw new TypeError('every event decide returns needs a non-empty `type`');
    }
  }
  return events;
}

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
let sink: (level: Level, message: string) => void = (level, message) => console.error(`${level}: ${message}`);

/** Writes to the host's structured log, tagged with the plugin's name (to
 *  stderr when run natively, in tests). */
export const log = {
  trace: (m: string) => sink('trace', m),
  debug: (m: string) => sink('debug', m),
  info: (m: string) => sink('info', m),
  warn: (m: string) => sink('warn', m),
  error: (m: string) => sink('error', m),
};

/** Where `log` writes; the component sets it to the host's `log`. */
export function setLogSink(f: (level: Level, message: string) => void): void {
  sink = f;
}
