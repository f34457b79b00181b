/** `keybroker serve`: run the daemon until SIGTERM/SIGINT (SIGHUP reloads certs and config). */
import type { Argv, CommandModule } from 'yargs';

interface Args {
  config?: string;
  workers?: string;
}

export const serveCommand: CommandModule<object, Args> = {
  command: 'serve',
  describe: 'Run the key broker daemon (gRPC over mTLS, /metrics /healthz /readyz)',
  builder: (y) =>
    (y as Argv<object>)
      .option('config', {
        type: 'string',
        describe: 'config file (JSON); KB_* environment variables override it',
      })
      .option('workers', {
        type: 'string',
        describe: "broker processes serving the port: N or 'auto' (one per core); default serve.workers (1)",
      })
      .epilogue(
        'Signals: SIGTERM/SIGINT drain and stop (a second one forces), SIGHUP reloads TLS certificates and config.\n' +
          'Exit codes: 0 clean stop, 1 failure or forced stop, 2 invalid config.',
      ) as unknown as Argv<Args>,
  handler: async (argv) => {
    // Loaded here, not at the top: every other command would pay for the whole daemon.
    const [{ ConfigError }, { runServe }] = await Promise.all([
      import('../config/load-config.ts'),
      import('../cluster/run-serve.ts'),
    ]);
    // Through the environment: the config loader reads it, and forked workers inherit it.
    if (argv.workers !== undefined) process.env.KB_SERVE_WORKERS = argv.workers;
    try {
      const code = await runServe(argv.config !== undefined ? { configPath: argv.config } : {});
      process.exit(code);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`keybroker serve: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
  },
};
