// Generated from wit/ by bin/wit-types.mjs: do not edit.
/// <reference path="./refract-plugin-types.d.ts" />
declare module 'refract:plugin/projector@0.1.0' {
  /**
   * Describes the projection. Called once per load; must not use `sql`.
   */
  export function describe(): Description;
  /**
   * Applies a batch of events, in log order, by writing to the
   * projection's tables through `sql`. The batch is one transaction: return
   * an error (naming the failing event) to roll all of it back; the host
   * then retries it, and stops the projection at that event if it keeps
   * failing.
   */
  export function apply(batch: EventBatch): void;
  export type EventBatch = import('refract:plugin/types@0.1.0').EventBatch;
  export type ApplyError = import('refract:plugin/types@0.1.0').ApplyError;
  export type EventVersion = import('refract:plugin/types@0.1.0').EventVersion;
  /**
   * A projection's description of itself. The host reads it once, when it
   * loads the plugin, and checks it before running anything.
   */
  export interface Description {
    /**
     * The projection's name: lowercase ASCII letters, digits, `-` and `_`,
     * starting with a letter or digit, at most 64 characters. It names the
     * read database (`projections/<name>.db`) and the HTTP routes
     * (`/projections/<name>/...`), so it must be unique among the loaded
     * plugins.
     */
    name: string,
    /**
     * A version label for people (for example `1.2.0`). The host rebuilds
     * the read model whenever the plugin's bytes change, whatever this says.
     */
    version: string,
    /**
     * The event types this projection wants. Only events of these types are
     * passed to `apply`; an empty list means every event.
     */
    eventTypes: Array<string>,
    /**
     * Schema migrations, in order: each entry is SQL (one or more
     * statements) run once, inside a transaction, on the projection's own
     * database. Append new entries to change the schema; never edit or
     * remove one that has shipped.
     */
    migrations: Array<string>,
    /**
     * The versions of event types it reads (see `types.event-version`).
     */
    eventVersions: Array<EventVersion>,
  }
}
