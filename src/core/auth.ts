import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { GraftError } from '../errors.js';
import { type CoreDeps, nowIso } from './deps.js';
import { findJson, writeJson } from './json-objects.js';
import { storageKeys } from './storage-keys.js';

export const SCOPES = ['admin', 'predict'] as const;
export type Scope = (typeof SCOPES)[number];

export const ApiKeyRecordSchema = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(z.enum(SCOPES)),
  /** sha256 of the whole key: the key itself is never stored. */
  sha256: z.string(),
  createdAt: z.string(),
  revokedAt: z.string().optional(),
});
export type ApiKeyRecord = z.infer<typeof ApiKeyRecordSchema>;

export interface Principal {
  keyId: string;
  scopes: Scope[];
}

// Keys look like `graft_<id>_<secret>`: the id finds the record, the hash of the whole key proves it.
const KEY_PATTERN = /^graft_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})$/;

export const sha256Hex = (value: string) => createHash('sha256').update(value).digest('hex');

function sameHash(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, 'hex');
  const b = Buffer.from(bHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface AuthOptions {
  /** sha256 of a key that is always accepted as admin (GRAFT_API_KEY locally, a secret in AWS). */
  adminKeySha256?: string;
}

/** Resolves an `Authorization` header to a principal, or throws UNAUTHORIZED saying what was wrong. */
export async function authenticate(
  deps: CoreDeps,
  header: string | undefined,
  options: AuthOptions,
): Promise<Principal> {
  if (!header) {
    throw new GraftError('UNAUTHORIZED', 'Missing API key: send the header "Authorization: Bearer <key>".');
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (!match?.[1]) {
    throw new GraftError('UNAUTHORIZED', 'Malformed Authorization header: expected "Bearer <key>".');
  }
  const key = match[1];
  const digest = sha256Hex(key);
  if (options.adminKeySha256 && sameHash(digest, options.adminKeySha256)) {
    return { keyId: 'root', scopes: ['admin', 'predict'] };
  }
  const id = KEY_PATTERN.exec(key)?.[1];
  const record = id
    ? (await findJson(deps.store, storageKeys.apiKey(id), ApiKeyRecordSchema))?.value
    : undefined;
  if (!record || !sameHash(digest, record.sha256) || record.revokedAt) {
    throw new GraftError('UNAUTHORIZED', 'Invalid or revoked API key.');
  }
  return { keyId: record.id, scopes: record.scopes.includes('admin') ? ['admin', 'predict'] : record.scopes };
}

export function requireScope(principal: Principal, scope: Scope) {
  if (!principal.scopes.includes(scope)) {
    throw new GraftError(
      'FORBIDDEN',
      `This API key has scope ${principal.scopes.join(', ')}; the request needs "${scope}". Use an admin key or create one with POST /v1/keys.`,
    );
  }
}

/** Creates a key; the plain key is returned once and only its hash is stored. */
export async function createApiKey(deps: CoreDeps, { name, scopes }: { name: string; scopes: Scope[] }) {
  const id = randomBytes(9)
    .toString('base64url')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '0')
    .slice(0, 12);
  const key = `graft_${id}_${randomBytes(32).toString('base64url')}`;
  const record: ApiKeyRecord = { id, name, scopes, sha256: sha256Hex(key), createdAt: nowIso(deps) };
  await writeJson(deps.store, storageKeys.apiKey(id), record, { ifNoneMatch: '*' });
  return { key, record: publicKey(record) };
}

export async function listApiKeys(deps: CoreDeps) {
  const keys = await deps.store.list(storageKeys.apiKeysPrefix());
  const records = await Promise.all(keys.map((key) => findJson(deps.store, key, ApiKeyRecordSchema)));
  return records.flatMap((found) => (found ? [publicKey(found.value)] : []));
}

export async function revokeApiKey(deps: CoreDeps, id: string) {
  const found = /^[a-z0-9]{12}$/.test(id)
    ? await findJson(deps.store, storageKeys.apiKey(id), ApiKeyRecordSchema)
    : undefined;
  if (!found) throw new GraftError('KEY_NOT_FOUND', `API key "${id.slice(0, 40)}" does not exist.`);
  const record = { ...found.value, revokedAt: found.value.revokedAt ?? nowIso(deps) };
  await writeJson(deps.store, storageKeys.apiKey(id), record, { ifMatch: found.etag });
  return publicKey(record);
}

function publicKey({ sha256: _hash, ...rest }: ApiKeyRecord) {
  return rest;
}
