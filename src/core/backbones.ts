import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { resolveHubFiles } from '../engine/backbones/hub.js';
import { imageBackboneSchema, loadImageBackbone } from '../engine/backbones/image.js';
import {
  loadTextBackbone,
  OPTIONAL_TEXT_BACKBONE_PATHS,
  REQUIRED_TEXT_BACKBONE_PATHS,
  readTextBackboneDir,
  TEXT_BACKBONE_PATHS,
  type TextBackboneFiles,
} from '../engine/backbones/text.js';
import {
  type Backbone,
  type BackboneConfig,
  type BackboneFiles,
  configSha256,
  HASH_NGRAMS,
  openBackbone,
  parseBackbone,
} from '../engine/index.js';
import { GraftError } from '../errors.js';
import { checkName, NAME_PATTERN } from '../names.js';
import type { ObjectStore } from '../ports/object-store.js';
import { memoize } from '../runtime/onnx.js';
import { type CoreDeps, nowIso } from './deps.js';
import { findJson, writeJson } from './json-objects.js';
import { ReadThroughCache } from './read-through-cache.js';
import { storageKeys } from './storage-keys.js';

const BUILT_IN: Record<string, BackboneConfig> = { [HASH_NGRAMS.name]: HASH_NGRAMS };

// Where a backbone's files come from. `store`: already in the bucket under backbones/{name}/ (Hub layout for
// text, model.onnx for image): the way to bring a model into an AWS deployment without a Hub download.
const SourceSchema = z.union([
  z
    .object({
      hub: z.string().min(1).max(200),
      revision: z.string().max(255).optional(),
      file: z.string().max(300).optional(),
    })
    .strict(),
  z.object({ dir: z.string().min(1).max(4096) }).strict(),
  z.object({ store: z.literal(true) }).strict(),
]);

/** The body of `PUT /v1/backbones/{name}`. */
export const BackboneInputSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('text'),
      source: SourceSchema,
      pooling: z.enum(['mean', 'cls']).optional(),
      normalize: z.boolean().optional(),
      maxLength: z.number().int().min(8).max(8192).optional(),
    })
    .strict(),
  z
    .object({
      kind: z.literal('image'),
      source: SourceSchema,
      cutAt: z.string().min(1).max(500),
      input: imageBackboneSchema.shape.input,
      includeRawInput: z.boolean().optional(),
    })
    .strict(),
]);
export type BackboneInput = z.infer<typeof BackboneInputSchema>;

export const BackboneManifestSchema = z.object({
  name: z.string(),
  config: z.record(z.string(), z.unknown()),
  source: z.record(z.string(), z.unknown()),
  /** Object keys of the stored files, relative to backbones/{name}/. */
  files: z.array(z.string()),
  createdAt: z.string(),
});
export type BackboneManifest = z.infer<typeof BackboneManifestSchema>;

/** The backbones a task or `/v1/embeddings` can name: the built-in ones and the registered ones. */
export async function listBackbones(deps: CoreDeps): Promise<BackboneConfig[]> {
  const names = await registeredNames(deps);
  const registered = await Promise.all(names.map((name) => resolveBackbone(deps, name)));
  return [...Object.values(BUILT_IN), ...registered];
}

/** The configuration of a backbone by name; BACKBONE_NOT_FOUND lists the known ones. */
export async function resolveBackbone(deps: CoreDeps, name: string): Promise<BackboneConfig> {
  return BUILT_IN[name] ?? parseBackbone((await registeredManifest(deps, name)).config);
}

/** The names of the registered backbones (those with a manifest). */
async function registeredNames(deps: CoreDeps): Promise<string[]> {
  const keys = await deps.store.list(storageKeys.backbonesPrefix());
  return keys.flatMap((key) => key.match(/^backbones\/([^/]+)\/manifest\.json$/)?.[1] ?? []);
}

/** The manifest of a registered backbone; BACKBONE_NOT_FOUND lists the known ones. */
async function registeredManifest(deps: CoreDeps, name: string): Promise<BackboneManifest> {
  const found = NAME_PATTERN.test(name)
    ? await findJson(deps.store, storageKeys.backboneManifest(name), BackboneManifestSchema)
    : undefined;
  if (!found) {
    const known = [...Object.keys(BUILT_IN), ...(await registeredNames(deps))];
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `Backbone "${name.slice(0, 80)}" is not known. Available: ${known.join(', ')}. Register one with PUT /v1/backbones/{name}.`,
    );
  }
  return found.value;
}

/**
 * A backbone ready to extract features, loaded once per process (memoised by its configuration's hash, so a
 * re-registered backbone of the same name is a new load).
 */
export async function openNamedBackbone(deps: CoreDeps, name: string): Promise<Backbone> {
  const config = await resolveBackbone(deps, name);
  return memoize(`backbone:${configSha256(config)}`, async () =>
    openBackbone(config, await readBackboneFiles(deps, config), {
      executionProviders: deps.executionProviders,
    }),
  );
}

// How long a request path trusts what a backbone name resolved to. A registration through the same store replaces
// it at once; this bounds how soon one made by another process (another Lambda instance) is used.
const SERVED_BACKBONE_REFRESH_MS = 1_000;
const servedBackbones = new WeakMap<ObjectStore, ReadThroughCache<Backbone>>();

const servedBackbonesOf = (store: ObjectStore) => {
  let cache = servedBackbones.get(store);
  if (!cache) {
    cache = new ReadThroughCache<Backbone>(SERVED_BACKBONE_REFRESH_MS);
    servedBackbones.set(store, cache);
  }
  return cache;
};

/**
 * `openNamedBackbone` for requests (`POST /v1/embeddings`): the opened backbone is kept per store and name, so a
 * request reads and checks no manifest; `registerBackbone` drops the name at once.
 */
export function servedBackbone(deps: CoreDeps, name: string): Promise<Backbone> {
  return servedBackbonesOf(deps.store).get(name, () => openNamedBackbone(deps, name));
}

async function readBackboneFiles(deps: CoreDeps, config: BackboneConfig): Promise<BackboneFiles> {
  switch (config.kind) {
    case 'hash':
      return {};
    case 'text': {
      const found = await readStoredTextFiles(deps, config.name, [
        'model',
        'tokenizerJson',
        'tokenizerConfigJson',
      ]);
      if (!found.model || !found.tokenizerJson) throw missingFiles(config.name);
      return found;
    }
    case 'image': {
      const model = (await deps.store.find(storageKeys.backboneFile(config.name, IMAGE_MODEL_FILE)))?.body;
      if (!model) throw missingFiles(config.name);
      return { model };
    }
  }
}

/** The files of a text backbone (`which`) that are under backbones/{name}/ in the store; all but `model` as text. */
async function readStoredTextFiles(
  deps: CoreDeps,
  name: string,
  which = Object.keys(TEXT_BACKBONE_PATHS) as (keyof TextBackboneFiles)[],
): Promise<Partial<TextBackboneFiles>> {
  const decoder = new TextDecoder();
  const entries = await Promise.all(
    which.map(
      async (key) =>
        [
          key,
          (await deps.store.find(storageKeys.backboneFile(name, TEXT_BACKBONE_PATHS[key])))?.body,
        ] as const,
    ),
  );
  return Object.fromEntries(
    entries.flatMap(([key, body]) => (body ? [[key, key === 'model' ? body : decoder.decode(body)]] : [])),
  );
}

const IMAGE_MODEL_FILE = 'model.onnx';

function missingFiles(name: string) {
  return new GraftError(
    'BACKBONE_NOT_FOUND',
    `The files of backbone "${name}" are missing from the store; register it again.`,
  );
}

/**
 * Registers (or replaces) a backbone: fetches its files from the Hub, a local directory or the store, checks
 * that they load and measures the feature width, copies them under backbones/{name}/ and writes the manifest
 * last, so a backbone is visible only once complete.
 */
export async function registerBackbone(
  deps: CoreDeps,
  name: string,
  input: BackboneInput,
): Promise<BackboneManifest> {
  checkName(name, 'backbone name');
  if (BUILT_IN[name]) {
    throw new GraftError(
      'INVALID_NAME',
      `"${name}" is a built-in backbone; register yours under another name.`,
    );
  }
  let config: BackboneConfig;
  let files: Record<string, Uint8Array>;
  if (input.kind === 'text') {
    const textFiles = await fetchTextFiles(deps, name, input.source);
    const backbone = await loadTextBackbone(textFiles, {
      name,
      ...(input.pooling ? { pooling: input.pooling } : {}),
      ...(input.normalize === undefined ? {} : { normalize: input.normalize }),
      ...(input.maxLength ? { maxLength: input.maxLength } : {}),
    });
    config = backbone.config;
    const encoder = new TextEncoder();
    files = Object.fromEntries(
      Object.entries(textFiles).map(([key, value]) => [
        TEXT_BACKBONE_PATHS[key as keyof TextBackboneFiles],
        typeof value === 'string' ? encoder.encode(value) : value,
      ]),
    );
  } else {
    const model = await fetchImageModel(deps, name, input.source);
    const backbone = await loadImageBackbone(model, {
      name,
      cutAt: input.cutAt,
      input: input.input,
      ...(input.includeRawInput ? { includeRawInput: true } : {}),
      executionProviders: deps.executionProviders,
    });
    config = backbone.config;
    files = { [IMAGE_MODEL_FILE]: model };
  }
  if (!('store' in input.source)) {
    for (const [relative, body] of Object.entries(files)) {
      await deps.store.put(storageKeys.backboneFile(name, relative), body);
    }
  }
  const manifest: BackboneManifest = {
    name,
    config: { ...config },
    source: { ...input.source },
    files: Object.keys(files).sort(),
    createdAt: nowIso(deps),
  };
  await writeJson(deps.store, storageKeys.backboneManifest(name), manifest);
  servedBackbonesOf(deps.store).invalidate(name);
  deps.log.info('backbone registered', { name, kind: config.kind, dims: config.dims });
  return manifest;
}

type Source = z.infer<typeof SourceSchema>;

async function fetchTextFiles(deps: CoreDeps, name: string, source: Source): Promise<TextBackboneFiles> {
  if ('hub' in source) {
    const { dir } = await resolveHubFiles({
      repo: source.hub,
      ...(source.revision ? { revision: source.revision } : {}),
      files: REQUIRED_TEXT_BACKBONE_PATHS,
      optionalFiles: OPTIONAL_TEXT_BACKBONE_PATHS,
      ...hubSettings(deps),
    });
    return readTextBackboneDir(dir);
  }
  if ('dir' in source) return readTextBackboneDir(localPath(deps, source.dir));
  const found = await readStoredTextFiles(deps, name);
  if (!found.model || !found.tokenizerJson) {
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `Put the sentence-transformer files under backbones/${name}/ in the store first (${REQUIRED_TEXT_BACKBONE_PATHS.join(', ')} at least).`,
    );
  }
  return found as TextBackboneFiles;
}

async function fetchImageModel(deps: CoreDeps, name: string, source: Source): Promise<Uint8Array> {
  if ('hub' in source) {
    if (!source.file) {
      throw new GraftError(
        'INVALID_OPTIONS',
        'An image backbone from the Hub needs `source.file`: the ONNX file in the repository.',
      );
    }
    const { paths } = await resolveHubFiles({
      repo: source.hub,
      ...(source.revision ? { revision: source.revision } : {}),
      files: [source.file],
      ...hubSettings(deps),
    });
    return new Uint8Array(await readFile(paths[source.file] ?? ''));
  }
  if ('dir' in source) {
    const file = localPath(deps, source.dir);
    return new Uint8Array(
      await readFile(file.endsWith('.onnx') ? file : path.join(file, IMAGE_MODEL_FILE)).catch(() => {
        throw new GraftError(
          'BACKBONE_NOT_FOUND',
          `No ONNX model at ${file} (give the .onnx file or a directory with model.onnx).`,
        );
      }),
    );
  }
  const stored = await deps.store.find(storageKeys.backboneFile(name, IMAGE_MODEL_FILE));
  if (!stored) {
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `Put the ONNX model at backbones/${name}/${IMAGE_MODEL_FILE} in the store first.`,
    );
  }
  return stored.body;
}

function hubSettings(deps: CoreDeps) {
  if (!deps.hub) {
    throw new GraftError('INVALID_OPTIONS', 'Hub downloads are not configured here; use a `store` source.');
  }
  const { endpoint, offline, token, cacheDir } = deps.hub;
  return {
    cacheDir,
    ...(endpoint ? { endpoint } : {}),
    ...(offline ? { offline } : {}),
    ...(token ? { token } : {}),
  };
}

function localPath(deps: CoreDeps, dir: string): string {
  if (!deps.allowDirSources) {
    throw new GraftError(
      'INVALID_OPTIONS',
      'Directory sources work only on a local Graft; use a `hub` or `store` source.',
    );
  }
  return path.resolve(dir);
}

export async function getBackboneManifest(deps: CoreDeps, name: string) {
  const builtIn = BUILT_IN[name];
  if (builtIn) return { name, config: builtIn, source: { builtIn: true }, files: [], createdAt: null };
  const manifest = await registeredManifest(deps, name);
  parseBackbone(manifest.config); // a manifest whose configuration no longer parses fails here, as it would in use
  return manifest;
}
