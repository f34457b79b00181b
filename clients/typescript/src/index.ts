/** @keybroker/client: the typed gRPC client, envelope encryption with cached data keys, helpers. */
export { KeybrokerClient } from './keybroker-client.ts';
export type {
  CallObserver,
  CallOptions,
  Input,
  KeybrokerClientOptions,
  ServiceApi,
  ServiceName,
  TlsFiles,
  TlsPems,
} from './keybroker-client.ts';
export { BrokerPool } from './broker-pool.ts';
export type { BrokerPoolOptions, FailoverMode } from './broker-pool.ts';
export { RETRY_CLASS, RETRY_DEFAULTS, backoffMs } from './retry-policy.ts';
export type { RetryClass, RetryOptions, RpcName } from './retry-policy.ts';
export { EnvelopeEncryptor } from './envelope-encryptor.ts';
export type { DecryptRecordOptions, EncryptRecordOptions, EnvelopeStats } from './envelope-encryptor.ts';
export { CACHE_DEFAULTS, DataKeyCache } from './data-key-cache.ts';
export type { DataKeyCacheLimits } from './data-key-cache.ts';
export { ENVELOPE_VERSION, EnvelopeError } from './envelope-format.ts';
export { blindIndex, getSecret, putSecret } from './secret-helpers.ts';
export { PROTO_FILES, protoRoot } from './proto-files.ts';
export * from './generated/keybroker-v1.ts';
