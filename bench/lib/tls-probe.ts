/**
 * One TLS handshake to a bench target with the client's own certificate, to record what the
 * load generator's connections negotiate (protocol, cipher, key-exchange group) next to the
 * numbers: the echo ceiling only means something if its TLS matches the daemon's.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';

/** e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519MLKEM768". */
export function probeTls(
  port: number,
  files: { caCert: string; cert: string; key: string },
  servername = 'localhost',
  timeoutMs = 5000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(files.caCert),
      cert: readFileSync(files.cert),
      key: readFileSync(files.key),
      servername,
      ALPNProtocols: ['h2'],
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TLS probe to port ${port} timed out`));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const group = socket.getEphemeralKeyInfo() as { name?: string; type?: string } | null;
      const groupName = group?.name ?? group?.type ?? 'unknown';
      const out = `${socket.getProtocol() ?? '?'} ${socket.getCipher().standardName} ${groupName}`;
      socket.end();
      resolve(out);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
