// Generated from wit/ by bin/wit-types.mjs: do not edit.
declare module 'refract:plugin/types@0.1.0' {
  /**
   * One event from the log, as a projection or command handler sees it.
   */
  export interface Event {
    /**
     * Global position in the log: starts at 1, gapless, in commit order.
     * Use it as a monotonic cursor (for example a `last_updated_position`
     * column) to make writes idempotent.
     */
    position: bigint,
    /**
     * The stream (aggregate) this event belongs to, for example `order-42`.
     */
    streamId: string,
    /**
     * Version of the stream after this event: 1 for the stream's first
     * event, then 2, 3, ... with no gaps.
     */
    streamVersion: bigint,
    /**
     * The event's type name as it was appended, for example `OrderPlaced`.
     */
    eventType: string,
    /**
     * The event's payload: a JSON document, as text.
     */
    data: string,
    /**
     * Metadata appended with the event (correlation ids and the like): a
     * JSON object, as text; `{}` when none was given.
     */
    metadata: string,
    /**
     * When the host recorded the event: milliseconds since the Unix epoch.
     */
    recordedAt: bigint,
  }
  /**
   * A value bound to an SQL parameter or read from a result column. The
   * variants are SQLite's storage classes.
   */
  export type Value = ValueNull | ValueInteger | ValueReal | ValueText | ValueBlob;
  /**
   * SQL `NULL`.
   */
  export interface ValueNull {
    tag: 'null',
  }
  /**
   * A 64-bit signed integer.
   */
  export interface ValueInteger {
    tag: 'integer',
    val: bigint,
  }
  /**
   * A 64-bit IEEE floating point number.
   */
  export interface ValueReal {
    tag: 'real',
    val: number,
  }
  /**
   * UTF-8 text.
   */
  export interface ValueText {
    tag: 'text',
    val: string,
  }
  /**
   * Raw bytes.
   */
  export interface ValueBlob {
    tag: 'blob',
    val: Uint8Array,
  }
  /**
   * A batch of events, in log order, packed into a few flat lists so that
   * it crosses into the plugin in a handful of copies rather than several
   * per event. Event `i` has position `positions[i]`, stream version
   * `stream-versions[i]` and `recorded-at[i]`, and four strings — its
   * stream id, event type, data and metadata, in that order — whose byte
   * lengths are `lengths[4i]` to `lengths[4i + 3]` and which lie back to
   * back in `text`, event after event. Each field means what it means in
   * `types.event`; the SDK hands a projection or a reactor `event` values.
   */
  export interface EventBatch {
    /**
     * Global positions, increasing.
     */
    positions: BigUint64Array,
    /**
     * Each event's version within its stream.
     */
    streamVersions: BigUint64Array,
    /**
     * When the host recorded each event: milliseconds since the Unix epoch.
     */
    recordedAt: BigInt64Array,
    /**
     * Four byte lengths per event: stream id, type, data, metadata.
     */
    lengths: Uint32Array,
    /**
     * Every event's four strings, back to back (UTF-8).
     */
    text: string,
  }
  /**
   * An event type at the version of its schema that a plugin reads (and,
   * for a command handler, writes). Events stored at older versions are
   * upcast to it by the loaded upcasters before the plugin sees them;
   * types a plugin does not list reach it as they were stored.
   */
  export interface EventVersion {
    /**
     * The event type, for example `OrderPlaced`.
     */
    eventType: string,
    /**
     * The schema version, from 1.
     */
    version: number,
  }
  /**
   * Why a batch could not be applied.
   */
  export interface ApplyError {
    /**
     * The position of the event that failed.
     */
    position: bigint,
    /**
     * What went wrong, for the operator reading the projection's status.
     */
    message: string,
  }
}
