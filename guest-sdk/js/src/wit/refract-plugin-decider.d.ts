// Generated from wit/ by bin/wit-types.mjs: do not edit.
/// <reference path="./refract-plugin-types.d.ts" />
declare module 'refract:plugin/decider@0.1.0' {
  /**
   * Describes the handler. Called once per load.
   */
  export function describe(): Description;
  /**
   * Decides on `command` given the stream's state: `snapshot` (the
   * state of its first `snapshot.version` events; none: start from the
   * initial state) and `history`, the stream's events after it, in
   * order (empty for a new stream). Snapshots never change a decision:
   * the state folded from a snapshot and the rest equals the state
   * folded from the whole history. With `keep-state`, the decision
   * carries the folded state.
   */
  export function handle(command: Command, snapshot: Snapshot | undefined, history: Array<Event>, keepState: boolean): Decision;
  export type Event = import('refract:plugin/types@0.1.0').Event;
  export type EventVersion = import('refract:plugin/types@0.1.0').EventVersion;
  /**
   * A handler's description of itself, read once when it is loaded.
   */
  export interface Description {
    /**
     * The handler's name: lowercase ASCII letters, digits, `-` and `_`,
     * starting with a letter or digit, at most 64 characters. Commands
     * are sent to `POST /commands/<name>`.
     */
    name: string,
    /**
     * A version label for people.
     */
    version: string,
    /**
     * The command types this handler accepts, for example `PlaceOrder`.
     */
    commandTypes: Array<string>,
    /**
     * The versions of event types it reads in a stream's history and
     * writes (see `types.event-version`): its events of these types
     * are recorded at these versions.
     */
    eventVersions: Array<EventVersion>,
  }
  /**
   * A command to decide on.
   */
  export interface Command {
    /**
     * The command's type, one of `description.command-types`.
     */
    commandType: string,
    /**
     * The stream the command targets; its events are the history.
     */
    streamId: string,
    /**
     * The command's payload: a JSON document, as text.
     */
    data: string,
    /**
     * Metadata sent with the command: a JSON object, as text (`{}` when
     * none was given).
     */
    metadata: string,
  }
  /**
   * An event the handler wants appended to the command's stream.
   */
  export interface NewEvent {
    /**
     * The event's type name, for example `OrderPlaced`; must not be empty.
     */
    eventType: string,
    /**
     * The payload: a JSON document, as text.
     */
    data: string,
  }
  /**
   * Why a command was refused. The client gets HTTP 422 with both fields.
   */
  export interface Rejection {
    /**
     * A stable, machine-readable reason, for example `already_paid`.
     */
    code: string,
    /**
     * A sentence for people.
     */
    message: string,
  }
  /**
   * The state a handler folded from a stream's first `version` events,
   * as it returned it (`decision.state`) from an earlier call.
   */
  export interface Snapshot {
    /**
     * How many of the stream's events the state covers.
     */
    version: bigint,
    /**
     * The state, serialized by the handler.
     */
    state: Uint8Array,
  }
  /**
   * What a handler decided.
   */
  export interface Decision {
    /**
     * The events to append (an empty list appends nothing).
     */
    events: Array<NewEvent>,
    /**
     * When `keep-state` was asked: the state folded from the snapshot
     * and the whole history (before the new events), serialized, for
     * the host to pass back as a snapshot of the stream at the
     * history's last version.
     */
    state?: Uint8Array,
  }
  /**
   * Why a handler gave no decision.
   */
  export type Refusal = RefusalRejected | RefusalBadSnapshot;
  /**
   * The command is refused (HTTP 422).
   */
  export interface RefusalRejected {
    tag: 'rejected',
    val: Rejection,
  }
  /**
   * The snapshot cannot be read (another format, corrupt): the host
   * calls again with the stream's whole history and no snapshot.
   */
  export interface RefusalBadSnapshot {
    tag: 'bad-snapshot',
    val: string,
  }
}
