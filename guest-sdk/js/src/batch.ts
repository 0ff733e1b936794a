// The packed batch of wit/types.wit (`event-batch`) taken apart.

export interface Batch {
  positions: BigUint64Array | bigint[];
  streamVersions: BigUint64Array | bigint[];
  recordedAt: BigInt64Array | bigint[];
  lengths: Uint32Array | number[];
  text: string;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** The events of a packed batch (wit/types.wit, `event-batch`), one by one. */
export function* unpack(batch: Batch): Generator<{ position: number; streamId: string; streamVersion: number; type: string; data: string; metadata: string; recordedAt: number }> {
  const n = batch.positions.length;
  if (batch.streamVersions.length !== n || batch.recordedAt.length !== n || batch.lengths.length !== 4 * n) {
    throw new Error('the host sent a malformed event batch: its lists differ in length');
  }
  // Lengths count UTF-8 bytes; when every character is ASCII they count
  // characters too, and the text is cut without being encoded.
  const bytes = utf8.encode(batch.text);
  const ascii = bytes.length === batch.text.length;
  let at = 0;
  const take = (len: number): string => {
    if (at + len > bytes.length) throw new Error('the host sent a malformed event batch: a length runs past its text');
    const s = ascii ? batch.text.slice(at, at + len) : fromUtf8.decode(bytes.subarray(at, at + len));
    at += len;
    return s;
  };
  for (let i = 0; i < n; i++) {
    const l = batch.lengths;
    yield {
      position: Number(batch.positions[i]),
      streamVersion: Number(batch.streamVersions[i]),
      recordedAt: Number(batch.recordedAt[i]),
      streamId: take(l[4 * i]),
      type: take(l[4 * i + 1]),
      data: take(l[4 * i + 2]),
      metadata: take(l[4 * i + 3]),
    };
  }
}

