import { describe, expect, it } from 'vitest';
import { CHAR_SEED, HashNgramsFeaturizer, tokenize, WORD_SEED } from '../src/engine/hash-ngrams.js';
import { type BackboneConfig, embed, HASH_NGRAMS, parseBackbone, tokenCount } from '../src/engine/index.js';
import { murmur3, murmur3String } from '../src/engine/murmur3.js';
import { GraftError } from '../src/errors.js';

const bytes = (...values: number[]) => Uint8Array.from(values);

/** Index and sign of a hashed n-gram, as format 1 defines them. */
function bucket(gram: string, seed: number, dims: number): { index: number; sign: number } {
  const hash = murmur3String(gram, seed);
  return { index: hash & (dims - 1), sign: hash & 0x80000000 ? -1 : 1 };
}

function l2(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (v[i] as number) ** 2;
  return Math.sqrt(s);
}

describe('murmur3 (x86, 32-bit)', () => {
  // Published vectors: SMHasher's verification set as listed by Ian Boyd (StackOverflow 14747343), and
  // scikit-learn's murmurhash3_32 tests ('foo' -> -156908512 with seed 0, -1322301282 with seed 42).
  it.each([
    [bytes(), 0, 0x00000000],
    [bytes(), 1, 0x514e28b7],
    [bytes(), 0xffffffff, 0x81f16f39],
    [bytes(0xff, 0xff, 0xff, 0xff), 0, 0x76293b50],
    [bytes(0x21, 0x43, 0x65, 0x87), 0, 0xf55b516b],
    [bytes(0x21, 0x43, 0x65, 0x87), 0x5082edee, 0x2362f9de],
    [bytes(0x21, 0x43, 0x65), 0, 0x7e4a8634],
    [bytes(0x21, 0x43), 0, 0xa0f7b07a],
    [bytes(0x21), 0, 0x72661cf4],
    [bytes(0, 0, 0, 0), 0, 0x2362f9de],
    [bytes(0, 0, 0), 0, 0x85f0b427],
    [bytes(0, 0), 0, 0x30f4c306],
    [bytes(0), 0, 0x514e28b7],
  ])('bytes %o with seed %i hash to the published value', (input, seed, expected) => {
    expect(murmur3(input, seed)).toBe(expected);
  });

  it.each([
    ['', 0xebb6c228],
    ['a', 0x7fa09ea6],
    ['ab', 0x74875592],
    ['abc', 0xc84a62dd],
    ['abcd', 0xf0478627],
    ['aaaa', 0x5a97808a],
    ['Hello, world!', 0x24884cba],
    ['ππππππππ', 0xd58063c1],
    ['The quick brown fox jumps over the lazy dog', 0x2fa826cd],
  ])('the UTF-8 string %j with seed 0x9747b28c hashes to the published value', (text, expected) => {
    expect(murmur3String(text, 0x9747b28c)).toBe(expected);
  });

  it("agrees with scikit-learn's murmurhash3_32", () => {
    expect(murmur3String('foo', 0)).toBe(-156908512 >>> 0);
    expect(murmur3String('foo', 42)).toBe(-1322301282 >>> 0);
  });

  it('hashes a slice of a buffer like the slice on its own', () => {
    const buffer = bytes(9, 9, 0x21, 0x43, 0x65, 0x87, 9);
    expect(murmur3(buffer, 0x5082edee, 2, 6)).toBe(0x2362f9de);
  });
});

describe('tokenize', () => {
  it('lowercases, keeps letters/digits runs and punctuation as tokens of their own', () => {
    expect(tokenize('What is the FULL form of .com ?')).toEqual([
      'what',
      'is',
      'the',
      'full',
      'form',
      'of',
      '.',
      'com',
      '?',
    ]);
    expect(tokenize('Crème brûlée, 2 €!')).toEqual(['crème', 'brûlée', ',', '2', '€', '!']);
    expect(tokenize('  \n\t ')).toEqual([]);
  });

  it('counts tokens for usage figures', () => {
    expect(tokenCount(HASH_NGRAMS, 'Is my card lost?')).toBe(5);
  });
});

describe('hash-ngrams featurizer', () => {
  const dims = 2 ** 16;

  it('hashes the character n-grams of " word " with the char seed, each weighing 1/sqrt(count)', () => {
    // given "ab" with character 2-3 grams only: " a", "ab", "b ", " ab", "ab "
    const featurizer = new HashNgramsFeaturizer({
      ...HASH_NGRAMS,
      dims,
      wordNgrams: [0, 0],
      charNgrams: [2, 3],
    });
    // when
    const vector = featurizer.featurize('AB');
    // then
    const expected = new Map<number, number>();
    for (const gram of [' a', 'ab', 'b ', ' ab', 'ab ']) {
      const { index, sign } = bucket(gram, CHAR_SEED, dims);
      expected.set(index, (expected.get(index) ?? 0) + sign / Math.sqrt(5));
    }
    expect(vector.indices.length).toBe(5);
    for (let k = 0; k < vector.indices.length; k++) {
      expect(vector.values[k]).toBeCloseTo(expected.get(vector.indices[k] as number) as number, 6);
    }
  });

  it('counts a word shorter than n once, whole (as char_wb)', () => {
    const featurizer = new HashNgramsFeaturizer({
      ...HASH_NGRAMS,
      dims,
      wordNgrams: [0, 0],
      charNgrams: [4, 5],
    });
    const vector = featurizer.featurize('a');
    const { index, sign } = bucket(' a ', CHAR_SEED, dims);
    expect(Array.from(vector.indices)).toEqual([index]);
    expect(vector.values[0]).toBeCloseTo(sign, 6);
  });

  it('weighs word n-grams by 1 + ln(count), then normalises', () => {
    // given "a a b": a twice, b once, bigrams "a a" and "a b" once each
    const featurizer = new HashNgramsFeaturizer({
      ...HASH_NGRAMS,
      dims,
      wordNgrams: [1, 2],
      charNgrams: [0, 0],
    });
    // when
    const vector = featurizer.featurize('a a b');
    // then
    const weights: [string, number][] = [
      ['a', 1 + Math.log(2)],
      ['b', 1],
      ['a a', 1],
      ['a b', 1],
    ];
    const norm = Math.sqrt(weights.reduce((s, [, w]) => s + w * w, 0));
    for (const [gram, w] of weights) {
      const { index, sign } = bucket(gram, WORD_SEED, dims);
      const k = Array.from(vector.indices).indexOf(index);
      expect(k, gram).toBeGreaterThanOrEqual(0);
      expect(vector.values[k]).toBeCloseTo((sign * w) / norm, 6);
    }
  });

  it('takes character n-grams over code points, not UTF-16 units', () => {
    // "𠀋" (U+2000B) is one letter but two UTF-16 units
    const featurizer = new HashNgramsFeaturizer({
      ...HASH_NGRAMS,
      dims,
      wordNgrams: [0, 0],
      charNgrams: [2, 2],
    });
    const vector = featurizer.featurize('a𠀋b');
    const expected = [' a', 'a𠀋', '𠀋b', 'b ']
      .map((g) => bucket(g, CHAR_SEED, dims).index)
      .sort((x, y) => x - y);
    expect(Array.from(vector.indices)).toEqual(expected);
  });

  it('gives unit vectors with sorted indices, the same every time, whatever the case', () => {
    const a = new HashNgramsFeaturizer(HASH_NGRAMS);
    const b = new HashNgramsFeaturizer(HASH_NGRAMS);
    for (const text of ['How do I top up my card?', 'x', 'Ünïcödé ✓ 😀 text, with 123 numbers!']) {
      const va = a.featurize(text);
      const vb = b.featurize(text.toUpperCase());
      expect(l2(va.values)).toBeCloseTo(1, 6);
      expect(Array.from(va.indices)).toEqual(Array.from(vb.indices));
      expect(Array.from(va.values)).toEqual(Array.from(vb.values));
      for (let k = 1; k < va.indices.length; k++) {
        expect(va.indices[k] as number).toBeGreaterThan(va.indices[k - 1] as number);
      }
    }
  });

  it('gives the empty vector for a text with no tokens', () => {
    const vector = new HashNgramsFeaturizer(HASH_NGRAMS).featurize('   ');
    expect(vector.indices.length).toBe(0);
  });
});

describe('embed', () => {
  const texts = ['Where is my card?', 'I want a refund', 'what does NASA stand for ?'];

  it('returns dense L2-normalised vectors of the backbone dims', () => {
    const vectors = embed(HASH_NGRAMS, texts);
    expect(vectors).toHaveLength(3);
    for (const v of vectors) {
      expect(v).toBeInstanceOf(Float32Array);
      expect(v.length).toBe(HASH_NGRAMS.dims);
      expect(l2(v)).toBeCloseTo(1, 5);
    }
    expect(embed(HASH_NGRAMS, [''])[0]?.every((x) => x === 0)).toBe(true);
  });

  it('folds to `dimensions` exactly as hashing into that many buckets', () => {
    // given the same backbone with 256 buckets
    const small: BackboneConfig = { ...HASH_NGRAMS, dims: 256 };
    // when
    const folded = embed(HASH_NGRAMS, texts, { dimensions: 256 });
    const direct = embed(small, texts);
    // then
    folded.forEach((v, i) => {
      expect(v.length).toBe(256);
      expect(l2(v)).toBeCloseTo(1, 5);
      const d = direct[i] as Float32Array;
      for (let j = 0; j < 256; j++) expect(v[j]).toBeCloseTo(d[j] as number, 6);
    });
  });

  it.each([3, 0, 1, 2 ** 17, 1.5, Number.NaN])('refuses dimensions %s with INVALID_OPTIONS', (dimensions) => {
    expect(() => embed(HASH_NGRAMS, texts, { dimensions })).toThrowError(
      expect.objectContaining({ code: 'INVALID_OPTIONS' }) as unknown as Error,
    );
  });
});

describe('parseBackbone', () => {
  it('accepts the default and refuses dims that are not a power of two, or bad ranges', () => {
    expect(parseBackbone(HASH_NGRAMS)).toEqual(HASH_NGRAMS);
    for (const bad of [
      { ...HASH_NGRAMS, dims: 1000 },
      { ...HASH_NGRAMS, wordNgrams: [2, 1] },
      { ...HASH_NGRAMS, wordNgrams: [0, 0], charNgrams: [0, 0] },
      { ...HASH_NGRAMS, kind: 'text' },
    ]) {
      let caught: unknown;
      try {
        parseBackbone(bad);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(GraftError);
      expect((caught as GraftError).code).toBe('INVALID_OPTIONS');
    }
  });
});
