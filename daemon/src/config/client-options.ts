/**
 * The yargs options every client command shares. Kept apart from client-config.ts so that
 * building the CLI's command tree loads no config schema (CLI start-up time).
 */
export const CLIENT_OPTIONS = {
  'data-dir': {
    type: 'string',
    default: '.data',
    describe: 'data dir made by `keybroker init` (config, certs)',
  },
  addr: { type: 'string', describe: 'daemon address host:port (default: from the data dir)' },
  ca: { type: 'string', describe: 'CA bundle to verify the server (default: <data-dir>/pki/ca.pem)' },
  cert: { type: 'string', describe: 'client certificate PEM (default: the data dir identity)' },
  key: { type: 'string', describe: 'client private key PEM' },
} as const;
