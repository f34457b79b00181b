/** The customers of a batch or stream, as the audit record's customer field holds them (review L7). */

/** Most characters of the audit record's customer field (audit-record.ts FIELD_LIMITS). */
const CUSTOMER_FIELD = 64;

/** Sorted, comma-separated, then "+N" for the N that do not fit in the field. */
export function customerList(customers: ReadonlySet<string>): string {
  const all = [...customers].sort();
  let out = '';
  for (let i = 0; i < all.length; i++) {
    const next = out === '' ? (all[i] as string) : `${out},${all[i]}`;
    const rest = all.length - i - 1;
    const tail = rest > 0 ? `,+${rest}` : '';
    if (next.length + tail.length > CUSTOMER_FIELD)
      return out === '' ? `+${all.length}` : `${out},+${all.length - i}`;
    out = next;
  }
  return out;
}
