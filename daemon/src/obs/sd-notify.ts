/**
 * systemd readiness notifications (Type=notify). Node has no unix datagram sockets, so this
 * spawns `systemd-notify`; the unit therefore needs NotifyAccess=all (the sender is a child).
 * A no-op unless NOTIFY_SOCKET is set.
 */
import { execFile } from 'node:child_process';
import { childEnv } from '../util/child-env.ts';
import type { Logger } from './logger.ts';

export type SdState = 'READY=1' | 'STOPPING=1' | `STATUS=${string}`;

/** Sends sd_notify states; failures are logged, never thrown (notification is best effort). */
export class SdNotify {
  readonly #enabled: boolean;
  readonly #log: Logger;
  /** What systemd-notify gets: PATH and NOTIFY_SOCKET only (not the daemon's KB_* or PIN). */
  readonly #env: NodeJS.ProcessEnv;

  constructor(log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.#enabled = (env.NOTIFY_SOCKET ?? '') !== '';
    this.#env = childEnv(['NOTIFY_SOCKET'], env);
    this.#log = log;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** Send one or more states in one message, e.g. notify('READY=1', 'STATUS=serving'). */
  notify(...states: SdState[]): Promise<void> {
    if (!this.#enabled) return Promise.resolve();
    // MAINPID: the message comes from a child, so tell systemd whose state this is.
    const args = [`MAINPID=${process.pid}`, ...states];
    return new Promise((resolve) => {
      execFile('systemd-notify', args, { timeout: 5000, env: this.#env }, (err) => {
        if (err) this.#log.warn({ err: err.message, states }, 'sd_notify failed');
        resolve();
      });
    });
  }
}
