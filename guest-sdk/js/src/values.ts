// SQL values: how JavaScript values are bound to statement parameters and
// read back from result columns, and the byte encoding of queued writes
// (`queued-writes` in wit/sql.wit).

/** A number to bind as SQLite REAL even when it has no fractional part. */
export class Real {
  constructor(readonly value: number) {}
}

/** A number to bind as SQLite INTEGER; fails if it is not a whole number. */
export class Int {
  readonly value: bigint;
  constructor(value: number | bigint) {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new RangeError(`${value} is not an integer that a double holds exactly`);
    }
    this.value = BigInt(value);
  }
}

/** Binds `value` as REAL. */
export const real = (value: number): Real => new Real(value);
/** Binds `value` as INTEGER. */
export const int = (value: number | bigint): Int => new Int(value);

/** What a statement parameter may be. */
export type Param = null | undefined | boolean | number | bigint | string | Uint8Array | Real | Int;

/** What a result column holds: INTEGER as a number (a bigint past 2^53),
 *  REAL as a number, TEXT as a string, BLOB as bytes, NULL as null. */
export type Column = null | number | bigint | string | Uint8Array;

/** One SQLite value, tagged by storage class. */
export type Value =
  | { tag: 'null' }
  | { tag: 'integer'; val: bigint }
  | { tag: 'real'; val: number }
  | { tag: 'text'; val: string }
  | { tag: 'blob'; val: Uint8Array };

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function integer(v: bigint): Value {
  if (v < I64_MIN || v > I64_MAX) throw new RangeError(`${v} does not fit SQLite's 64-bit integers`);
  return { tag: 'integer', val: v };
}

/** The SQLite value a parameter binds as: whole numbers that a double holds
 *  exactly as INTEGER, other numbers as REAL, booleans as 0 or 1. */
export function toValue(p: Param): Value {
  if (p === null || p === undefined) return { tag: 'null' };
  switch (typeof p) {
    case 'boolean':
      return { tag: 'integer', val: p ? 1n : 0n };
    case 'number':
      return Number.isSafeInteger(p) ? { tag: 'integer', val: BigInt(p) } : { tag: 'real', val: p };
    case 'bigint':
      return integer(p);
    case 'string':
      return { tag: 'text', val: p };
  }
  if (p instanceof Real) return { tag: 'real', val: p.value };
  if (p instanceof Int) return integer(p.value);
  if (p instanceof Uint8Array) return { tag: 'blob', val: p };
  throw new TypeError(`cannot bind ${Object.prototype.toString.call(p)} as an SQL parameter`);
}

/** A result column as JavaScript reads it. */
export function fromValue(v: Value): Column {
  switch (v.tag) {
    case 'null':
      return null;
    case 'integer': {
      const n = Number(v.val);
      return Number.isSafeInteger(n) ? n : v.val;
    }
    default:
      return v.val;
  }
}

const NULL = 0;
const INTEGER = 1;
const REAL = 2;
const TEXT = 3;
const BLOB = 4;

/** Send the queue once it holds this many statements or parameter bytes. */
export const FLUSH_STATEMENTS = 64;
export const FLUSH_BYTES = 32 << 10;

const utf8 = new TextEncoder();

/** Statements queued and not yet sent, packed as `queued-writes`. */
export class Pending {
  statements: string[] = [];
  private index = new Map<string, number>();
  positions: bigint[] = [];
  statementIndices: number[] = [];
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  private len = 0;

  /** Queues `sql` with `params` for the event at `position`; whether the
   *  queue should now be sent. */
  push(position: number, sql: string, params: readonly Param[]): boolean {
    let i = this.index.get(sql);
    if (i === undefined) {
      i = this.statements.length;
      this.statements.push(sql);
      this.index.set(sql, i);
    }
    // Converted before anything is written, so a bad parameter queues nothing.
    const values = params.map(toValue);
    this.reserve(4);
    this.view.setUint32(this.len, values.length, true);
    this.len += 4;
    for (const v of values) {
      switch (v.tag) {
        case 'null':
          this.reserve(1);
          this.buf[this.len++] = NULL;
          break;
        case 'integer':
          this.reserve(9);
          this.buf[this.len++] = INTEGER;
          this.view.setBigInt64(this.len, v.val, true);
          this.len += 8;
          break;
        case 'real':
          this.reserve(9);
          this.buf[this.len++] = REAL;
          this.view.setFloat64(this.len, v.val, true);
          this.len += 8;
          break;
        case 'text':
          this.bytes(TEXT, utf8.encode(v.val));
          break;
        case 'blob':
          this.bytes(BLOB, v.val);
          break;
      }
    }
    this.positions.push(BigInt(position));
    this.statementIndices.push(i);
    return this.positions.length >= FLUSH_STATEMENTS || this.len >= FLUSH_BYTES;
  }

  get isEmpty(): boolean {
    return this.positions.length === 0;
  }

  /** The packed parameters. */
  params(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  clear(): void {
    this.statements = [];
    this.index.clear();
    this.positions = [];
    this.statementIndices = [];
    this.len = 0;
  }

  private bytes(tag: number, b: Uint8Array): void {
    this.reserve(5 + b.length);
    this.buf[this.len++] = tag;
    this.view.setUint32(this.len, b.length, true);
    this.len += 4;
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }
}
