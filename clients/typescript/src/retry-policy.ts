/**
 * Which RPCs the client retries, and how long it waits. Reads and operations without a lasting
 * effect (Encrypt, GenerateDataKey, Sign, ...) are retried on UNAVAILABLE and on RESOURCE_EXHAUSTED
 * that carries a retry-after-ms trailer (the broker refused before doing anything). Mutations are
 * retried only when the caller opts in (`retryMutations`), or when the call never left the client
 * (no connection to that broker: another broker is tried).
 */
import type { RpcTypes } from './generated/keybroker-v1.ts';

export type RpcName = keyof RpcTypes;
export type RetryClass = 'idempotent' | 'mutation';

/** Every RPC, classified (typecheck fails when a new RPC is not listed). */
export const RETRY_CLASS: Record<RpcName, RetryClass> = {
  'Admin.CreateOrg': 'mutation',
  'Admin.ListOrgs': 'idempotent',
  'Admin.DescribeOrg': 'idempotent',
  'Admin.SetOrgEnabled': 'mutation',
  'Admin.RotateOrgKey': 'mutation',
  'Admin.CreateTenant': 'mutation',
  'Admin.CreateTenants': 'mutation',
  'Admin.ListTenants': 'idempotent',
  'Admin.DescribeTenant': 'idempotent',
  'Admin.SetTenantEnabled': 'mutation',
  'Admin.RotateTenantKey': 'mutation',
  'Admin.DestroyTenant': 'mutation',
  'Admin.CreateCustomer': 'mutation',
  'Admin.ListCustomers': 'idempotent',
  'Admin.DescribeCustomer': 'idempotent',
  'Admin.SetCustomerEnabled': 'mutation',
  'Admin.RotateCustomerKey': 'mutation',
  'Admin.DestroyCustomer': 'mutation',
  'Admin.GetBrokerKeys': 'idempotent',
  'Admin.SetKeyPolicy': 'mutation',
  'Admin.SetKeyVersionEnabled': 'mutation',
  'Admin.RotateDueKeys': 'mutation',
  'Admin.CreateBlindIndex': 'mutation',
  'Admin.RotateBlindIndex': 'mutation',
  'Admin.SetBlindIndexMinVersion': 'mutation',
  'Admin.ListBlindIndexes': 'idempotent',
  'Approvals.RequestApproval': 'mutation',
  'Approvals.ApproveRequest': 'mutation',
  'Approvals.CancelApproval': 'mutation',
  'Approvals.ListApprovals': 'idempotent',
  'BlindIndexes.ComputeBlindIndex': 'idempotent',
  'BlindIndexes.ComputeBlindIndexBatch': 'idempotent',
  'Certificates.CreateCa': 'mutation',
  'Certificates.GetCa': 'idempotent',
  'Certificates.IssueCertificate': 'mutation',
  'Certificates.RevokeCertificate': 'mutation',
  'Certificates.ListCertificates': 'idempotent',
  'Crypto.Encrypt': 'idempotent',
  'Crypto.Decrypt': 'idempotent',
  'Crypto.EncryptBatch': 'idempotent',
  'Crypto.DecryptBatch': 'idempotent',
  'Crypto.GenerateDataKey': 'idempotent',
  'Crypto.DecryptDataKey': 'idempotent',
  'Crypto.Rewrap': 'idempotent',
  // Streams are never retried (the caller holds the stream).
  'Crypto.EncryptStream': 'mutation',
  'Crypto.DecryptStream': 'mutation',
  'Keys.CreateKey': 'mutation',
  'Keys.ListKeys': 'idempotent',
  'Keys.DescribeKey': 'idempotent',
  'Keys.RotateKey': 'mutation',
  'Keys.SetAsymmetricKeyVersionEnabled': 'mutation',
  'Keys.SetAsymmetricKeyPolicy': 'mutation',
  'Keys.GetPublicKey': 'idempotent',
  'Keys.GetJwks': 'idempotent',
  'Keys.Sign': 'idempotent',
  'Keys.Verify': 'idempotent',
  'Keys.SignBatch': 'idempotent',
  'Keys.VerifyBatch': 'idempotent',
  'Keys.Encapsulate': 'idempotent',
  'Keys.EncapsulateBatch': 'idempotent',
  'Keys.Decapsulate': 'idempotent',
  'Keys.DecapsulateBatch': 'idempotent',
  'Keys.SealBox': 'idempotent',
  'Keys.OpenBox': 'idempotent',
  'Keys.CreateImportJob': 'mutation',
  'Keys.ImportKey': 'mutation',
  'Policy.GetPolicy': 'idempotent',
  'Policy.SetPolicy': 'mutation',
  'Secrets.PutSecret': 'mutation',
  'Secrets.GetSecret': 'idempotent',
  'Secrets.ListSecrets': 'idempotent',
  'Secrets.DeleteSecret': 'mutation',
  'Secrets.UndeleteSecret': 'mutation',
  'Secrets.DestroySecretVersions': 'mutation',
};

export interface RetryOptions {
  /** Attempts in all, first included (default 4). */
  readonly maxAttempts?: number;
  /** First backoff (default 50 ms); doubles per attempt up to maxDelayMs (default 2 s). */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Retry mutations too (default false). */
  readonly retryMutations?: boolean;
}

export const RETRY_DEFAULTS = { maxAttempts: 4, baseDelayMs: 50, maxDelayMs: 2_000, retryMutations: false };

/** Full-jitter exponential backoff before attempt `attempt` (1 = first retry), at least `floorMs`. */
export function backoffMs(
  attempt: number,
  o: { baseDelayMs: number; maxDelayMs: number },
  floorMs = 0,
  random = Math.random,
): number {
  const ceiling = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** (attempt - 1));
  // The server's retry-after is a floor; jitter on top spreads clients that were refused together.
  return floorMs > 0 ? floorMs + random() * Math.min(ceiling, floorMs) : random() * ceiling;
}
