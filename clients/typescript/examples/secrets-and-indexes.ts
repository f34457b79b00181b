/**
 * Secrets and blind indexes, with two brokers (failover) and a 5 s deadline per call. The index
 * "email" must exist (an admin creates it: keybroker admin create-blind-index or Admin.CreateBlindIndex).
 *
 *   node examples/secrets-and-indexes.ts 127.0.0.1:7443,127.0.0.1:7444 ca.pem service.pem service-key.pem
 */
import { KeybrokerClient, blindIndex, getSecret, putSecret } from '../src/index.ts';

const [
  addresses = '127.0.0.1:7443',
  caFile = 'ca.pem',
  certFile = 'service.pem',
  keyFile = 'service-key.pem',
] = process.argv.slice(2);
const client = new KeybrokerClient({
  addresses: addresses.split(','),
  tls: { caFile, certFile, keyFile },
  deadlineMs: 5_000,
  failover: 'round-robin',
});
try {
  const version = await putSecret(client, 'app/db-password', 'correct horse battery staple');
  const { value } = await getSecret(client, 'app/db-password');
  console.log(`secret version ${version}: ${value.length} bytes`);
  const [token] = await blindIndex(client, 'email', 'Alice@Example.com');
  console.log(`blind index token v${token?.version}: ${token?.token.toString('hex')}`);
  // Any RPC, typed: sign with a post-quantum key.
  await client.keys
    .createKey({ keyId: 'release-signer', algorithm: 'KEY_ALGORITHM_ML_DSA_65' })
    .catch(() => undefined);
  const sig = await client.keys.sign({ keyId: 'release-signer', message: Buffer.from('v1.2.3') });
  console.log(`ML-DSA-65 signature: ${sig.signature.length} bytes`);
} finally {
  client.close();
}
