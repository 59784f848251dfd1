import { z } from 'zod';
import { GraftError } from '../errors.js';

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

/** Every backbone the engine knows; text and image backbones join this union, keyed on `kind`. */
export type BackboneConfig = HashNgramsConfig;

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

export const backboneSchema = z.discriminatedUnion('kind', [hashNgramsSchema]);

/** Validates a backbone configuration (from a request or from a model's metadata); throws INVALID_OPTIONS. */
export function parseBackbone(value: unknown): BackboneConfig {
  const result = backboneSchema.safeParse(value);
  if (!result.success) {
    const issues = result.error.issues
      .map((i) => `${i.path.join('.') || 'backbone'}: ${i.message}`)
      .join('; ');
    throw new GraftError('INVALID_OPTIONS', `Invalid backbone configuration (${issues}).`, {
      details: { issues: result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
    });
  }
  return result.data as BackboneConfig;
}
