/**
 * A cheap pre-scan of a request's protobuf bytes, before protobufjs decodes them: counts field
 * occurrences (tags) through every message-typed field, and gives up as soon as the count passes a
 * bound. Decoding is where the cost is (an object per repeated item, defaults filled in): a 6 MB
 * body of `0a 00` is 3 million empty batch items, ~10 s of event loop and gigabytes of heap, while
 * this scan stops after `limit` tags, in microseconds.
 */
import type { PackageDefinition } from '@grpc/proto-loader';

/** Field number -> the message type it holds (only message-typed fields are listed). */
type Nested = ReadonlyMap<number, string>;

/** What the scan found: within the bound, over it, or not valid protobuf wire format. */
export type ScanResult = 'ok' | 'too-many-fields' | 'malformed';

interface FieldDescriptor {
  readonly number: number;
  readonly type: string;
  readonly typeName: string;
}

const MAX_DEPTH = 32;

/** Message-typed fields of every message of a loaded package, by full type name. */
export function nestedFieldsOf(pkg: PackageDefinition): ReadonlyMap<string, Nested> {
  const out = new Map<string, Nested>();
  for (const [name, def] of Object.entries(pkg)) {
    const type = (def as { format?: string; type?: { field?: FieldDescriptor[] } }).type;
    if ((def as { format?: string }).format !== 'Protocol Buffer 3 DescriptorProto' || type === undefined)
      continue;
    const pkgName = name.slice(0, name.lastIndexOf('.'));
    const nested = new Map<number, string>();
    for (const f of type.field ?? []) {
      if (f.type !== 'TYPE_MESSAGE') continue;
      const t = f.typeName.startsWith('.') ? f.typeName.slice(1) : f.typeName;
      nested.set(f.number, t in pkg ? t : `${pkgName}.${t}`);
    }
    out.set(name, nested);
  }
  return out;
}

/** A varint at `pos`: [value (low 32 bits are enough for tags and lengths), next pos], or undefined. */
function varint(buf: Uint8Array, pos: number, end: number): [number, number] | undefined {
  let v = 0;
  for (let shift = 0; shift < 64; shift += 7) {
    if (pos >= end) return undefined;
    const b = buf[pos++] as number;
    if (shift < 53) v += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [v, pos];
  }
  return undefined;
}

/**
 * Count tags in `buf` as message `type` (recursing into message-typed fields), stopping once
 * more than `limit` were seen.
 */
export function scanFieldCount(
  types: ReadonlyMap<string, Nested>,
  type: string,
  buf: Uint8Array,
  limit: number,
): ScanResult {
  let count = 0;
  const scan = (t: string | undefined, start: number, end: number, depth: number): ScanResult => {
    if (depth > MAX_DEPTH) return 'malformed';
    const nested = t === undefined ? undefined : types.get(t);
    let pos = start;
    while (pos < end) {
      if (++count > limit) return 'too-many-fields';
      const tag = varint(buf, pos, end);
      if (tag === undefined) return 'malformed';
      pos = tag[1];
      const field = Math.floor(tag[0] / 8);
      switch (tag[0] % 8) {
        case 0: {
          const v = varint(buf, pos, end);
          if (v === undefined) return 'malformed';
          pos = v[1];
          break;
        }
        case 1:
          pos += 8;
          break;
        case 5:
          pos += 4;
          break;
        case 2: {
          const len = varint(buf, pos, end);
          if (len === undefined || len[1] + len[0] > end) return 'malformed';
          const sub = nested?.get(field);
          if (sub !== undefined) {
            const r = scan(sub, len[1], len[1] + len[0], depth + 1);
            if (r !== 'ok') return r;
          }
          pos = len[1] + len[0];
          break;
        }
        case 3:
        case 4:
          // Groups (proto2 only): their fields are simply counted at this level.
          break;
        default:
          return 'malformed';
      }
    }
    return pos === end ? 'ok' : 'malformed';
  };
  return scan(type, 0, buf.length, 0);
}
