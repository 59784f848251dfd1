// Downloads files of a Hugging Face Hub repository into a local cache, the way huggingface_hub does it over
// plain HTTP: GET {endpoint}/{repo}/resolve/{revision}/{path}, follow the redirect of large (LFS) files to the CDN,
// check the bytes against the ETag the Hub states, and publish each file with an atomic rename.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { GraftError } from '../../errors.js';

/** The public Hub; HF_ENDPOINT points elsewhere (a mirror, a local test server). */
export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

export interface ResolveHubFilesOptions {
  /** `org/name` (or a legacy single name), as in the Hub's URLs. */
  repo: string;
  /** Branch, tag or commit. A commit pins the files; a branch is cached under its name and not refreshed. @default 'main' */
  revision?: string;
  /** Repository paths that must exist (`onnx/model.onnx`, `tokenizer.json`). */
  files: readonly string[];
  /** Repository paths read when the repository has them; their absence is remembered in the cache. */
  optionalFiles?: readonly string[];
  /** Where the Hub is (HF_ENDPOINT). @default DEFAULT_HUB_ENDPOINT */
  endpoint?: string;
  /** Files land in `{cacheDir}/{org--name}/{revision}/{path}`. */
  cacheDir: string;
  /** Read the cache only, never the network (HF_HUB_OFFLINE). @default false */
  offline?: boolean;
  /** Access token for private and gated repositories (HF_TOKEN); sent to the Hub only, never to the CDN. */
  token?: string;
  /** @default globalThis.fetch */
  fetch?: typeof globalThis.fetch;
  signal?: AbortSignal;
}

export interface HubFiles {
  /** The local directory that mirrors the repository at this revision. */
  dir: string;
  /** Local path of every file found, keyed by its repository path. */
  paths: Record<string, string>;
  /** Optional files the repository does not have. */
  missing: string[];
  /** Files this call downloaded (the others came from the cache). */
  downloaded: string[];
  /** The commit the Hub resolved the revision to (X-Repo-Commit), when it said. */
  commit: string | undefined;
}

const MAX_REDIRECTS = 10;
// Repository ids as the Hub accepts them: no '--' or '..', which is what makes the cache directory name unambiguous.
const REPO_PATTERN = /^(?:[A-Za-z0-9][\w.-]{0,95}\/)?[A-Za-z0-9][\w.-]{0,95}$/;
const REVISION_PATTERN = /^[\w][\w.\-/]{0,254}$/;

/**
 * Makes files of a Hub repository available locally: from the cache when present, otherwise downloaded (unless
 * `offline`). A missing repository, revision or file, a gated repository without access, and offline mode with an
 * empty cache throw BACKBONE_NOT_FOUND with what to do; an unreachable Hub or corrupted download throws
 * STORAGE_UNAVAILABLE (try again); bad names throw INVALID_OPTIONS.
 */
export async function resolveHubFiles(options: ResolveHubFilesOptions): Promise<HubFiles> {
  const {
    repo,
    revision = 'main',
    files,
    optionalFiles = [],
    endpoint = DEFAULT_HUB_ENDPOINT,
    cacheDir,
    offline = false,
    token,
    fetch: fetchImpl = globalThis.fetch,
    signal,
  } = options;
  checkRepo(repo);
  checkRevision(revision);
  for (const file of [...files, ...optionalFiles]) checkRepoPath(file);

  const repoDir = path.join(cacheDir, repo.replaceAll('/', '--'));
  const revisionDir = encodeURIComponent(revision);
  const dir = path.join(repoDir, revisionDir);
  const absentMarker = (file: string) => path.join(repoDir, '.no-exist', revisionDir, ...file.split('/'));
  const commitFile = path.join(repoDir, 'refs', revisionDir);

  const result: HubFiles = { dir, paths: {}, missing: [], downloaded: [], commit: undefined };
  const notCached: string[] = [];
  const wanted = [
    ...files.map((file) => ({ file, optional: false })),
    ...optionalFiles.map((file) => ({ file, optional: true })),
  ];
  for (const { file, optional } of wanted) {
    const local = path.join(dir, ...file.split('/'));
    if (await isFile(local)) result.paths[file] = local;
    else if (optional && (await isFile(absentMarker(file)))) result.missing.push(file);
    else if (offline) {
      if (optional) result.missing.push(file);
      else notCached.push(file);
    } else {
      const hub = { endpoint, repo, revision, file, token, fetch: fetchImpl, signal };
      const outcome = await download(hub, local, optional);
      if (outcome.status === 'absent') {
        await writeAtomically(absentMarker(file), new Uint8Array());
        result.missing.push(file);
        continue;
      }
      result.paths[file] = local;
      result.downloaded.push(file);
      if (outcome.commit) {
        result.commit = outcome.commit;
        await writeAtomically(commitFile, new TextEncoder().encode(outcome.commit));
      }
    }
  }
  if (notCached.length > 0) {
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `Offline mode (HF_HUB_OFFLINE) is on and ${notCached.join(', ')} of ${repo}@${revision} ${notCached.length === 1 ? 'is' : 'are'} not in the cache ${dir}. Run once with network access (HF_HUB_OFFLINE unset) to fill the cache, or copy the repository's files into that directory.`,
      { details: { repo, revision, missing: notCached, cacheDir: dir } },
    );
  }
  result.commit ??= await readFile(commitFile, 'utf8').catch(() => undefined);
  return result;
}

interface HubRequest {
  endpoint: string;
  repo: string;
  revision: string;
  file: string;
  token: string | undefined;
  fetch: typeof globalThis.fetch;
  signal: AbortSignal | undefined;
}

type DownloadOutcome = { status: 'absent' } | { status: 'downloaded'; commit: string | undefined };

async function download(hub: HubRequest, target: string, optional: boolean): Promise<DownloadOutcome> {
  const base = hub.endpoint.replace(/\/+$/, '');
  const fileUrl = `${base}/${hub.repo}/resolve/${encodeURIComponent(hub.revision)}/${hub.file.split('/').map(encodeURIComponent).join('/')}`;
  const hubOrigin = new URL(fileUrl).origin;

  let url = fileUrl;
  let response: Response | undefined;
  // What the Hub itself says about the file: its first answer carries the checksum, later hops are the CDN's.
  let expectedEtag: string | undefined;
  let expectedSize: number | undefined;
  let commit: string | undefined;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    // identity: the sizes the Hub states are of the raw file, and we verify against them.
    const headers: Record<string, string> = { 'user-agent': 'graft', 'accept-encoding': 'identity' };
    // Redirects to the CDN carry a signed URL: the token is for the Hub only.
    if (hub.token && new URL(url).origin === hubOrigin) headers.authorization = `Bearer ${hub.token}`;
    try {
      response = await hub.fetch(url, { headers, redirect: 'manual', signal: hub.signal });
    } catch (err) {
      throw unavailable(
        hub,
        `could not be reached (${err instanceof Error ? err.message : String(err)})`,
        err,
      );
    }
    if (hop === 0) {
      expectedEtag = normaliseEtag(response.headers.get('x-linked-etag') ?? response.headers.get('etag'));
      const size = response.headers.get('x-linked-size');
      expectedSize = size === null ? undefined : Number(size);
      commit = response.headers.get('x-repo-commit') ?? undefined;
    }
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url).toString();
      continue;
    }
    break;
  }
  if (!response) throw unavailable(hub, 'gave no answer');
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel();
    throw unavailable(hub, `redirected more than ${MAX_REDIRECTS} times`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    const hubError = response.headers.get('x-error-code') ?? undefined;
    if (optional && response.status === 404 && (hubError === undefined || hubError === 'EntryNotFound')) {
      return { status: 'absent' };
    }
    throw hubError === undefined && (response.status === 429 || response.status >= 500)
      ? unavailable(hub, `answered ${response.status}`)
      : notFound(hub, response.status, hubError);
  }
  if (!response.body) throw unavailable(hub, 'sent an empty body');
  const encoding = response.headers.get('content-encoding');
  if (!encoding || encoding === 'identity')
    expectedSize ??= numberOrUndefined(response.headers.get('content-length'));

  await mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.${randomUUID()}.part`;
  const sha256 = createHash('sha256');
  let size = 0;
  const handle = await open(temp, 'w');
  try {
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        sha256.update(chunk);
        size += chunk.byteLength;
        await handle.write(chunk);
      }
    } finally {
      await handle.close();
    }
    const problem = await checkDownload(temp, {
      size,
      sha256: sha256.digest('hex'),
      expectedSize,
      expectedEtag,
    });
    if (problem) throw unavailable(hub, `sent a corrupted file (${problem}); try again`);
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    if (err instanceof GraftError) throw err;
    throw unavailable(hub, `download failed (${err instanceof Error ? err.message : String(err)})`, err);
  }
  return { status: 'downloaded', commit };
}

/**
 * The Hub's ETag is the sha256 of an LFS file (64 hex digits, in X-Linked-Etag) or the git blob sha1 of a small
 * file (40 hex digits): both can be checked. Anything else (a CDN's own ETag) is not a content hash.
 */
async function checkDownload(
  file: string,
  facts: { size: number; sha256: string; expectedSize: number | undefined; expectedEtag: string | undefined },
): Promise<string | undefined> {
  const { size, sha256, expectedSize, expectedEtag } = facts;
  if (expectedSize !== undefined && Number.isFinite(expectedSize) && size !== expectedSize) {
    return `${size} bytes instead of ${expectedSize}`;
  }
  if (expectedEtag && /^[0-9a-f]{64}$/.test(expectedEtag) && sha256 !== expectedEtag) {
    return `sha256 ${sha256} instead of ${expectedEtag}`;
  }
  if (expectedEtag && /^[0-9a-f]{40}$/.test(expectedEtag)) {
    // Files without LFS are small (the Hub sends larger ones through LFS), so reading one back is cheap.
    const content = await readFile(file);
    const blob = createHash('sha1').update(`blob ${content.byteLength}\0`).update(content).digest('hex');
    if (blob !== expectedEtag) return `git blob sha1 ${blob} instead of ${expectedEtag}`;
  }
  return undefined;
}

function normaliseEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  return etag.replace(/^W\//, '').replaceAll('"', '').trim().toLowerCase();
}

function notFound(hub: HubRequest, status: number, hubError: string | undefined): GraftError {
  const where = `${hub.repo}@${hub.revision}`;
  const page = `${hub.endpoint.replace(/\/+$/, '')}/${hub.repo}`;
  let message: string;
  if (hubError === 'GatedRepo' || status === 403) {
    message = hub.token
      ? `${where} is a gated repository and the token given has no access: accept its conditions at ${page} with the account of the token.`
      : `${where} is a gated repository: accept its conditions at ${page}, then set HF_TOKEN to a token of that account.`;
  } else if (hubError === 'RevisionNotFound') {
    message = `The revision "${hub.revision}" does not exist in ${hub.repo}: use a branch, tag or commit of the repository.`;
  } else if (hubError === 'EntryNotFound' || (status === 404 && hubError !== 'RepoNotFound')) {
    message = `${where} has no file ${hub.file}: a text backbone needs the sentence-transformer layout with ONNX weights (onnx/model.onnx and tokenizer.json).`;
  } else if (status === 401 && hub.token && hubError !== 'RepoNotFound') {
    message = `The Hub refused the token for ${where} (401): check HF_TOKEN.`;
  } else {
    // The Hub answers 401 for a missing repository as well as for a private one, so as not to reveal which.
    message = `The repository ${hub.repo} was not found on ${hub.endpoint} (${status}): check the name; if it is private or gated, set HF_TOKEN to a token with access.`;
  }
  return new GraftError('BACKBONE_NOT_FOUND', message, {
    details: {
      repo: hub.repo,
      revision: hub.revision,
      file: hub.file,
      status,
      ...(hubError ? { hubError } : {}),
    },
  });
}

function unavailable(hub: HubRequest, what: string, cause?: unknown): GraftError {
  return new GraftError(
    'STORAGE_UNAVAILABLE',
    `The Hugging Face Hub at ${hub.endpoint} ${what} while fetching ${hub.file} of ${hub.repo}@${hub.revision}. Try again later; with the files already cached, offline mode (HF_HUB_OFFLINE=1) needs no network.`,
    {
      details: { repo: hub.repo, revision: hub.revision, file: hub.file },
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

function checkRepo(repo: string): void {
  if (!REPO_PATTERN.test(repo) || repo.includes('--') || repo.includes('..')) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Invalid Hub repository ${JSON.stringify(repo)}: expected "org/name" of letters, digits, '-', '_' and '.', without "--" or "..".`,
    );
  }
}

function checkRevision(revision: string): void {
  if (
    !REVISION_PATTERN.test(revision) ||
    revision.split('/').some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Invalid Hub revision ${JSON.stringify(revision)}: expected a branch, tag or commit.`,
    );
  }
}

function checkRepoPath(file: string): void {
  const segments = file.split('/');
  if (file.length > 500 || file.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new GraftError('INVALID_OPTIONS', `Invalid file path ${JSON.stringify(file)} in a Hub repository.`);
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function writeAtomically(target: string, content: Uint8Array): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.${randomUUID()}.part`;
  await writeFile(temp, content);
  await rename(temp, target);
}

function numberOrUndefined(value: string | null): number | undefined {
  if (value === null) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}
