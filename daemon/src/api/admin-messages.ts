/** Maps KeyBrokerApi results to keybroker.v1 messages (types.proto). */
import type {
  BrokerKeys,
  CustomerInfo,
  KeyInfo,
  OrgInfo,
  ShredReceipt,
  TenantInfo,
} from '../keys/key-broker-api.ts';

const LEVEL = { org: 'KEY_LEVEL_ORG', tenant: 'KEY_LEVEL_TENANT', customer: 'KEY_LEVEL_CUSTOMER' } as const;
const STATE = {
  enabled: 'KEY_VERSION_STATE_ENABLED',
  disabled: 'KEY_VERSION_STATE_DISABLED',
  destroyed: 'KEY_VERSION_STATE_DESTROYED',
} as const;

export function keyMessage(k: KeyInfo): object {
  return {
    level: LEVEL[k.level],
    primaryVersion: k.primary,
    versions: k.versions.map((v) => ({
      version: v.version,
      state: STATE[v.state],
      createTime: v.createdAt,
      uses: v.uses,
    })),
    policy: {
      rotationPeriodSeconds: k.policy.rotationPeriodSeconds,
      usageLimit: k.policy.usageLimit,
      minEncryptVersion: k.policy.minEncryptVersion,
      minDecryptVersion: k.policy.minDecryptVersion,
    },
  };
}

export function orgMessage(o: OrgInfo): object {
  return { org: o.org, enabled: o.enabled, createTime: o.createdAt, key: keyMessage(o.key) };
}

export function tenantMessage(t: TenantInfo): object {
  return {
    org: t.org,
    tenant: t.tenant,
    enabled: t.enabled,
    createTime: t.createdAt,
    key: keyMessage(t.key),
  };
}

export function customerMessage(c: CustomerInfo): object {
  return {
    org: c.org,
    tenant: c.tenant,
    customer: c.customer,
    enabled: c.enabled,
    createTime: c.createdAt,
    key: keyMessage(c.key),
  };
}

export function receiptMessage(r: ShredReceipt): object {
  return {
    body: r.body,
    signatureAlgorithm: r.signatureAlgorithm,
    signature: r.signature,
    publicKeyPem: r.publicKeyPem,
  };
}

export function brokerKeysMessage(k: BrokerKeys): object {
  return {
    receiptKey: k.receiptKey,
    ...(k.auditCheckpointKey !== undefined ? { auditCheckpointKey: k.auditCheckpointKey } : {}),
    brokerInstance: k.brokerInstance,
  };
}
