import { createHash } from 'node:crypto';
import { z } from 'zod';
import { GraftError } from '../errors.js';
import { type ImageBackboneConfig, imageBackboneSchema } from './backbones/image.js';
import { parseConfig } from './backbones/parse-config.js';
import { type TextBackboneConfig, textBackboneSchema } from './backbones/text.js';

export type { ImageBackboneConfig } from './backbones/image.js';
export type { TextBackboneConfig } from './backbones/text.js';

/**
 * The built-in `hash-ngrams` backbone: hashed word and character n-grams (no download, works offline).
 * An n-gram range `[0, 0]` turns that family off.
 */
export interface HashNgramsConfig {
  kind: 'hash';
  name: 'hash-ngrams';
  /** Hash buckets, a power of two; the exported weight matrix is `dims x classes` float32. */
  dims: number;
  wordNgrams: [number, number];
  /** Character n-grams inside word boundaries, each word padded with a space on both sides. */
  charNgrams: [number, number];
}

/**
 * Every backbone the engine knows, keyed on `kind`: `hash` (sparse features computed in TypeScript), `text` (a
 * sentence-transformer graph with pooling) and `image` (a CNN cut at a feature tensor); the last two are dense.
 */
export type BackboneConfig = HashNgramsConfig | TextBackboneConfig | ImageBackboneConfig;

export const MIN_HASH_DIMS = 2 ** 4;
export const MAX_HASH_DIMS = 2 ** 20;

export const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

const ngramRange = (max: number) =>
  z
    .tuple([z.number().int().min(0).max(max), z.number().int().min(0).max(max)])
    .refine(
      ([lo, hi]) => lo <= hi && (lo > 0 || hi === 0),
      'must be [min, max] with 1 <= min <= max, or [0, 0]',
    );

const hashNgramsSchema = z
  .object({
    kind: z.literal('hash'),
    name: z.literal('hash-ngrams'),
    dims: z
      .number()
      .int()
      .min(MIN_HASH_DIMS)
      .max(MAX_HASH_DIMS)
      .refine(isPowerOfTwo, 'must be a power of two'),
    wordNgrams: ngramRange(8),
    charNgrams: ngramRange(12),
  })
  .refine((c) => c.wordNgrams[1] > 0 || c.charNgrams[1] > 0, 'needs word or character n-grams (or both)');

export const backboneSchema = z.discriminatedUnion('kind', [
  hashNgramsSchema,
  textBackboneSchema,
  imageBackboneSchema,
]);

/** Validates a backbone configuration (from a request or from a model's metadata); throws INVALID_OPTIONS. */
export function parseBackbone(value: unknown): BackboneConfig {
  return parseConfig(backboneSchema, value, 'backbone') as BackboneConfig;
}

/** Validates a `hash-ngrams` configuration; throws INVALID_OPTIONS (also for a text or image configuration). */
export function parseHashNgramsConfig(value: unknown): HashNgramsConfig {
  const config = parseBackbone(value);
  if (config.kind !== 'hash') {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Expected a hash-ngrams backbone; got a ${config.kind} backbone.`,
    );
  }
  return config;
}

/** True for the backbones whose features are dense vectors computed by an ONNX graph (text, image). */
export const isDenseBackbone = (config: BackboneConfig): config is TextBackboneConfig | ImageBackboneConfig =>
  config.kind !== 'hash';

/**
 * A stable SHA-256 (hex) of a backbone configuration: JSON with sorted keys, so key order does not matter. Text
 * and image configurations hold the SHA-256 of their weights, so this identifies the features exactly: the key
 * of the embeddings cache.
 */
export function configSha256(config: BackboneConfig): string {
  return createHash('sha256')
    .update(canonicalJson(parseBackbone(config)))
    .digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
