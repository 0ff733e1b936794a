// Generated from wit/ by bin/wit-types.mjs: do not edit.
/// <reference path="./refract-plugin-types.d.ts" />
declare module 'refract:plugin/decider@0.1.0' {
  /**
   * Describes the handler. Called once per load.
   */
  export function describe(): Description;
  /**
   * Decides on `command` given `history`, the events of its stream in
   * order (empty for a new stream). Returns the events to append (an
   * empty list appends nothing) or a rejection.
   */
  export function handle(command: Command, history: Array<Event>): Array<NewEvent>;
  export type Event = import('refract:plugin/types@0.1.0').Event;
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
}
