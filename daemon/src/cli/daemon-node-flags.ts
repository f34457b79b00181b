/**
 * The V8 flags the daemon runs with: the systemd unit's ExecStart, `dev.sh run`, the bench and
 * the test harness all start `serve` with these (a test checks the unit and dev.sh).
 *
 * `--max-semi-space-size=16` caps each half of the young generation at 16 MB. With 16 GB of RAM
 * or more (a 4 GB heap limit) V8 lets it grow to 64 MB; once the young generation outgrows the
 * room left under the old generation's limit, V8 stops scavenging and runs a full mark-compact
 * instead, every 300-600 ms under a steady EncapsulateBatch load (`--trace-gc`). The cap keeps
 * the cheap scavenges: the GC threads' CPU falls from 7-9 to 2-5 µs an item there, the item's
 * server CPU from a median of 57 to 45 µs (seven same-minute pairs) and the daemon's peak RSS from
 * ~540 to 280-430 MB, with Encrypt, VerifyBatch and DecapsulateBatch CPU unchanged within noise
 * (bench, 2026-11-22).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16'];
