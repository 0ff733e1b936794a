// Generated from wit/ by bin/wit-types.mjs: do not edit.
/// <reference path="./refract-plugin-types.d.ts" />
declare module 'refract:plugin/sql@0.1.0' {
  /**
   * Runs one statement that returns no rows (`CREATE`, `INSERT`, `UPDATE`,
   * `DELETE`, ...) with `?` placeholders bound to `params` in order.
   * Returns the number of rows changed.
   */
  export function execute(statement: string, params: Array<Value>): bigint;
  /**
   * Queues one statement that returns no rows, like `execute`, without
   * waiting for it: the host runs queued statements in order, on a thread
   * of its own, while the plugin goes on with the next events — so a
   * replay keeps SQLite and the plugin's code busy at the same time.
   * `position` is the event being applied, whose failure it will be.
   * 
   * Everything that depends on queued statements waits for them first:
   * `execute` and `query` (a plugin always reads its own writes) and the
   * end of `apply`. If a queued statement fails, the statements queued
   * after it are dropped, the batch fails at that statement's event with
   * its error (rolled back and retried like any failed batch), and every
   * later call of this batch returns the same error. Otherwise returns as
   * soon as the statement is queued; refusals that need no database
   * (such as `VACUUM`) are returned at once. `write-queued` does the same
   * for many statements per call, which is what the SDK sends.
   */
  export function write(position: bigint, statement: string, params: Array<Value>): void;
  /**
   * Queues several statements at once, as `write` does one by one: they
   * run in order after everything queued before, each as its own
   * `write` would. Malformed lists (lengths that differ, an index past
   * `statements`) are refused at once and nothing is queued; any other
   * failure — a refused statement, a malformed parameter list, SQLite's
   * error — fails the batch at the event of the statement it belongs to,
   * and is returned by the calls after it, as for `write`.
   */
  export function writeQueued(writes: QueuedWrites): void;
  /**
   * Runs one `SELECT` (or another statement that returns rows) with `?`
   * placeholders bound to `params` in order and returns every row.
   * Results are capped by the host (see the host's documentation); a query
   * that exceeds the cap fails with `refused` rather than truncating
   * silently.
   */
  export function query(statement: string, params: Array<Value>): Rows;
  export type Value = import('refract:plugin/types@0.1.0').Value;
  /**
   * Why a statement failed.
   */
  export type SqlError = SqlErrorRefused | SqlErrorFailed;
  /**
   * The host does not allow this statement in a plugin; the text says
   * which rule it broke. Retrying will not help.
   */
  export interface SqlErrorRefused {
    tag: 'refused',
    val: string,
  }
  /**
   * SQLite rejected or failed the statement (syntax error, constraint
   * violation, unknown table, ...); the text is SQLite's message.
   */
  export interface SqlErrorFailed {
    tag: 'failed',
    val: string,
  }
  /**
   * The result of a query: column names, then rows of values in the same
   * column order.
   */
  export interface Rows {
    /**
     * Column names, in the order of the `SELECT` list.
     */
    columns: Array<string>,
    /**
     * One entry per row; each row has one value per column.
     */
    rows: Array<Array<Value>>,
  }
  /**
   * Statements queued together, packed into a few flat lists so that
   * many cross into the host in one call (see `write-queued`).
   * Statement `i` runs `statements[statement-indices[i]]` for the event at
   * `positions[i]`, with the `i`-th parameter list of `params`.
   */
  export interface QueuedWrites {
    /**
     * The distinct statement texts, each once.
     */
    statements: Array<string>,
    /**
     * For each queued statement, in order: the position of the event
     * being applied, whose failure it will be.
     */
    positions: BigUint64Array,
    /**
     * For each queued statement, in order: which of `statements` it
     * runs.
     */
    statementIndices: Uint32Array,
    /**
     * Every queued statement's parameters, one statement after another.
     * For each statement: the number of parameters (4 bytes), then each
     * parameter as a tag byte and its value: `0` null (no value), `1`
     * integer (8 bytes), `2` real (8 bytes, IEEE 754), `3` text and `4`
     * blob (a 4-byte byte length, then the bytes; text is UTF-8).
     * Numbers are little-endian.
     */
    params: Uint8Array,
  }
}
