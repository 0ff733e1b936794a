// The host's imports as componentize-js presents them (wit/sql.wit,
// wit/log.wit): u64 as bigint, list<u64> as BigUint64Array, results as
// exceptions whose `payload` is the error.

declare module 'refract:plugin/sql@0.1.0' {
  import type { Value } from './values.ts';
  export interface QueuedWrites {
    statements: string[];
    positions: BigUint64Array;
    statementIndices: Uint32Array;
    params: Uint8Array;
  }
  export interface Rows {
    columns: string[];
    rows: Value[][];
  }
  export type SqlError = { tag: 'refused'; val: string } | { tag: 'failed'; val: string };
  export function execute(statement: string, params: Value[]): bigint;
  export function writeQueued(writes: QueuedWrites): void;
  export function query(statement: string, params: Value[]): Rows;
}

declare module 'refract:plugin/log@0.1.0' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  export function write(level: Level, message: string): void;
}
