import { GraftError } from '../errors.js';
import { type HashNgramsConfig, isPowerOfTwo, parseHashNgramsConfig } from './backbone.js';
import { murmur3String } from './murmur3.js';

/**
 * Default `hash-ngrams` backbone: word 1-2 grams and character 1-4 grams in 2^16 buckets (on banking77,
 * trec and sms-spam: as accurate as 2^17 and character 2-5 grams on validation, and faster to train).
 */
export const HASH_NGRAMS: HashNgramsConfig = {
  kind: 'hash',
  name: 'hash-ngrams',
  dims: 2 ** 16,
  wordNgrams: [1, 2],
  charNgrams: [1, 4],
};

/** A sparse vector: strictly increasing `indices`, and `values` beside them. */
export interface SparseVector {
  readonly indices: Int32Array;
  readonly values: Float32Array;
}

// Words and character n-grams hash with different seeds, so the word "is" and the n-gram "is" of "this"
// are different features.
export const WORD_SEED = 0x9747b28c;
export const CHAR_SEED = 0x2f693a5b;
// Runs of letters, marks and digits are words; any other non-space character is a token of its own, so
// "?" and "!" count as words (they carry the question type, or the spam).
const TOKEN = /[\p{L}\p{M}\p{N}]+|[^\p{L}\p{M}\p{N}\s]/gu;
const WORD = /^[\p{L}\p{M}\p{N}]/u;
const SURROGATE = /[\uD800-\uDFFF]/;

/**
 * Turns texts into hashed n-gram vectors. Format 1 of the featurizer, as stored in exported models:
 * 1. NFKC, lowercase; tokens = runs of letters/marks/digits, and single punctuation or symbol characters.
 * 2. Word n-grams (tokens joined by one space) hash with MurmurHash3-32 seed 0x9747b28c; character n-grams
 *    of each letter/digit word padded as " word " (scikit-learn's `char_wb`) hash with seed 0x2f693a5b.
 * 3. Each distinct n-gram weighs 1 + ln(count); the word and the character families are each scaled to
 *    unit L2 norm, so both weigh the same whatever their sizes.
 * 4. Bucket = hash & (dims - 1), sign = - when bit 31 of the hash is set; the sum is L2-normalised.
 * Because the bucket is the low bits of the hash, folding a vector to `d` dims (summing buckets modulo `d`)
 * and normalising again gives exactly the vector hashed into `d` buckets.
 */
export class HashNgramsFeaturizer {
  readonly config: HashNgramsConfig;
  readonly #accumulator: Float64Array;
  readonly #touched: Int32Array;
  readonly #seen: Uint8Array;
  readonly #wordCounts = new Map<number, number>();
  readonly #charCounts = new Map<number, number>();

  constructor(config: HashNgramsConfig) {
    this.config = parseHashNgramsConfig(config);
    this.#accumulator = new Float64Array(this.config.dims);
    this.#touched = new Int32Array(this.config.dims);
    this.#seen = new Uint8Array(this.config.dims);
  }

  /** The hashed vector of one text, sparse; the empty vector when the text has no tokens. */
  featurize(text: string): SparseVector {
    const { dims, wordNgrams, charNgrams } = this.config;
    const tokens = tokenize(text);
    const wordCounts = this.#wordCounts;
    const charCounts = this.#charCounts;
    wordCounts.clear();
    charCounts.clear();
    if (wordNgrams[1] > 0) countWordNgrams(tokens, wordNgrams[0], wordNgrams[1], wordCounts);
    if (charNgrams[1] > 0) {
      for (const token of tokens) {
        if (WORD.test(token)) countCharNgrams(token, charNgrams[0], charNgrams[1], charCounts);
      }
    }
    const acc = this.#accumulator;
    const touched = this.#touched;
    const seen = this.#seen;
    const mask = dims - 1;
    let count = 0;
    for (const counts of [wordCounts, charCounts]) {
      if (counts.size === 0) continue;
      let sumSquares = 0;
      for (const c of counts.values()) {
        const w = 1 + Math.log(c);
        sumSquares += w * w;
      }
      const scale = 1 / Math.sqrt(sumSquares);
      for (const [hash, c] of counts) {
        const index = hash & mask;
        const value = (1 + Math.log(c)) * scale;
        if (seen[index] === 0) {
          seen[index] = 1;
          touched[count++] = index;
        }
        acc[index] = (acc[index] as number) + (hash & 0x80000000 ? -value : value);
      }
    }
    const order = touched.subarray(0, count).sort();
    let sumSquares = 0;
    let nonZero = 0;
    for (let k = 0; k < count; k++) {
      const v = acc[order[k] as number] as number;
      if (v !== 0) {
        sumSquares += v * v;
        nonZero++;
      }
    }
    const indices = new Int32Array(nonZero);
    const values = new Float32Array(nonZero);
    const inverseNorm = sumSquares > 0 ? 1 / Math.sqrt(sumSquares) : 0;
    let out = 0;
    for (let k = 0; k < count; k++) {
      const index = order[k] as number;
      const v = acc[index] as number;
      acc[index] = 0;
      seen[index] = 0;
      if (v === 0) continue;
      indices[out] = index;
      values[out] = v * inverseNorm;
      out++;
    }
    return { indices, values };
  }
}

/** The tokens `featurize` sees: words (letters, marks, digits) and single punctuation or symbol characters. */
export function tokenize(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(TOKEN) ?? [];
}

function countWordNgrams(
  tokens: readonly string[],
  lo: number,
  hi: number,
  counts: Map<number, number>,
): void {
  for (let n = lo; n <= hi; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const gram = n === 1 ? (tokens[i] as string) : tokens.slice(i, i + n).join(' ');
      const hash = murmur3String(gram, WORD_SEED);
      counts.set(hash, (counts.get(hash) ?? 0) + 1);
    }
  }
}

function countCharNgrams(word: string, lo: number, hi: number, counts: Map<number, number>): void {
  const padded = ` ${word} `;
  // Character n-grams count code points, not UTF-16 units.
  const chars: ArrayLike<string> = SURROGATE.test(padded) ? Array.from(padded) : padded;
  const length = chars.length;
  for (let n = lo; n <= hi; n++) {
    let offset = 0;
    for (; offset === 0 || offset + n <= length; offset++) {
      const gram =
        chars === padded
          ? padded.slice(offset, offset + n)
          : Array.prototype.slice.call(chars, offset, offset + n).join('');
      const hash = murmur3String(gram, CHAR_SEED);
      counts.set(hash, (counts.get(hash) ?? 0) + 1);
    }
    // A word shorter than n counts once, as a whole (as scikit-learn's char_wb does).
    if (length <= n) break;
  }
}

/** Sums the buckets of a dense vector modulo `dimensions` and normalises again (to unit L2 norm). */
export function foldVector(vector: Float32Array, dimensions: number): Float32Array {
  const out = new Float32Array(dimensions);
  const mask = dimensions - 1;
  for (let i = 0; i < vector.length; i++) {
    const v = vector[i] as number;
    if (v !== 0) out[i & mask] = (out[i & mask] as number) + v;
  }
  normalizeInPlace(out);
  return out;
}

function normalizeInPlace(v: Float32Array): void {
  let sumSquares = 0;
  for (let i = 0; i < v.length; i++) sumSquares += (v[i] as number) ** 2;
  if (sumSquares === 0) return;
  const inverse = 1 / Math.sqrt(sumSquares);
  for (let i = 0; i < v.length; i++) v[i] = (v[i] as number) * inverse;
}

/** Writes a sparse vector into row `row` of a dense row-major matrix with `dims` columns. */
export function scatterInto(vector: SparseVector, target: Float32Array, row: number, dims: number): void {
  const base = row * dims;
  for (let k = 0; k < vector.indices.length; k++) {
    target[base + (vector.indices[k] as number)] = vector.values[k] as number;
  }
}

/**
 * Dense, L2-normalised hashed vectors (the empty text gives the zero vector). `dimensions` folds them to a
 * smaller power of two, like OpenAI's `dimensions` parameter: the result equals hashing into that many buckets.
 */
export function embedHashNgrams(
  config: HashNgramsConfig,
  texts: readonly string[],
  { dimensions = config.dims }: { dimensions?: number } = {},
): Float32Array[] {
  if (!isPowerOfTwo(dimensions) || dimensions < 2 || dimensions > config.dims) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `dimensions must be a power of two between 2 and ${config.dims} (the backbone's dims); got ${dimensions}.`,
    );
  }
  const featurizer = new HashNgramsFeaturizer(config);
  return texts.map((text) => {
    if (typeof text !== 'string') {
      throw new GraftError('INVALID_OPTIONS', `Every input must be a string; got ${typeof text}.`);
    }
    const vector = featurizer.featurize(text);
    const dense = new Float32Array(config.dims);
    scatterInto(vector, dense, 0, config.dims);
    return dimensions === config.dims ? dense : foldVector(dense, dimensions);
  });
}
