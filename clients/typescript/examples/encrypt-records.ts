/**
 * Encrypt many records with few broker calls: EnvelopeEncryptor caches data keys (at most 10,000
 * records or 5 minutes per key here) and binds each record to its row id.
 *
 *   node examples/encrypt-records.ts 127.0.0.1:7443 ca.pem service.pem service-key.pem
 */
import { EnvelopeEncryptor, KeybrokerClient } from '../src/index.ts';

const [address = '127.0.0.1:7443', caFile = 'ca.pem', certFile = 'service.pem', keyFile = 'service-key.pem'] =
  process.argv.slice(2);
const client = new KeybrokerClient({ addresses: [address], tls: { caFile, certFile, keyFile } });
const envelope = new EnvelopeEncryptor(client, { maxMessages: 10_000, maxAgeMs: 5 * 60_000 });
try {
  const rows = Array.from({ length: 1000 }, (_v, i) => ({
    id: `user-${i}`,
    body: `{"email":"u${i}@example.com"}`,
  }));
  const sealed = await Promise.all(
    rows.map((r) =>
      envelope.encryptRecord(Buffer.from(r.body), {
        keyContext: Buffer.from('table=users'),
        aad: Buffer.from(r.id),
      }),
    ),
  );
  const back = await envelope.decryptRecord(sealed[0] as Buffer, { aad: Buffer.from('user-0') });
  console.log(
    `${sealed.length} records, ${envelope.stats.generated} GenerateDataKey call(s); first: ${back}`,
  );
} finally {
  client.close();
}
