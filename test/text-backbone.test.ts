import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { env, pipeline } from '@huggingface/transformers';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FEATURES_OUTPUT } from '../src/engine/backbones/dense.js';
import {
  createTextTokenizer,
  embedTexts,
  loadTextBackbone,
  parseTextBackboneConfig,
  readTextBackboneDir,
  type TextBackbone,
  type TextBackboneFiles,
} from '../src/engine/backbones/text.js';
import { GraftError } from '../src/errors.js';
import { OnnxSession } from '../src/runtime/onnx.js';
import { createTinyBertModel, TINY_BERT_VOCAB, writeTinyBertLayout } from './support/tiny-bert.js';

const { onnx } = onnxProto;

let root: string;
let files: TextBackboneFiles;
const sessions: OnnxSession[] = [];

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'graft-text-backbone-'));
  await writeTinyBertLayout(path.join(root, 'tiny-bert'), { seed: 42 });
  await writeTinyBertLayout(path.join(root, 'tiny-bert-cls'), { seed: 42, pooling: 'cls', normalize: false });
  files = await readTextBackboneDir(path.join(root, 'tiny-bert'));
});

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.dispose()));
  await rm(root, { recursive: true, force: true });
});

async function sessionOf(model: Uint8Array): Promise<OnnxSession> {
  const session = await OnnxSession.create(model);
  sessions.push(session);
  return session;
}

async function embed(backbone: TextBackbone, texts: string[]): Promise<Float32Array[]> {
  return embedTexts(backbone, await sessionOf(backbone.graph), texts);
}

const ids = (tensor: { data: unknown }) => Array.from(tensor.data as BigInt64Array, Number);
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  return Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - (b[i] as number))), 0);
};

/** sentence-transformers' pooling written out in float64: masked mean or first token, then x / max(||x||, 1e-12). */
function handPool(
  hidden: { data: Float32Array; dims: number[] },
  mask: number[],
  { pooling, normalize }: { pooling: 'mean' | 'cls'; normalize: boolean },
): Float64Array[] {
  const [n = 0, seq = 0, dims = 0] = hidden.dims;
  const at = (i: number, t: number, d: number) => hidden.data[(i * seq + t) * dims + d] as number;
  return Array.from({ length: n }, (_, i) => {
    const pooled = new Float64Array(dims);
    if (pooling === 'cls') {
      for (let d = 0; d < dims; d++) pooled[d] = at(i, 0, d);
    } else {
      let count = 0;
      for (let t = 0; t < seq; t++) {
        const m = mask[i * seq + t] as number;
        count += m;
        for (let d = 0; d < dims; d++) pooled[d] = (pooled[d] as number) + m * at(i, t, d);
      }
      for (let d = 0; d < dims; d++) pooled[d] = (pooled[d] as number) / Math.max(count, 1e-9);
    }
    const scale = normalize ? 1 / Math.max(norm(pooled), 1e-12) : 1;
    return pooled.map((x) => x * scale);
  });
}

async function expectError(promise: Promise<unknown>, code: string, pattern: RegExp) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GraftError);
  expect((err as GraftError).code).toBe(code);
  expect((err as GraftError).message).toMatch(pattern);
}

describe('text backbone: tokenisation', () => {
  it('turns a known sentence into the WordPiece ids of the vocabulary, with [CLS] and [SEP]', async () => {
    // given
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert' });
    // when
    const inputs = backbone.prepare(['The cat jumped!', "MONEY's"]);
    // then: ids read off TINY_BERT_VOCAB by hand
    // [CLS]=2 the=83 cat=100 jump=107 ##ed=134 !=5 [SEP]=3 | [CLS] money=117 '=6 s=29 [SEP] [PAD]=0 [PAD]
    expect(
      ['[CLS]', 'the', 'cat', 'jump', '##ed', '!', '[SEP]'].map((t) => TINY_BERT_VOCAB.indexOf(t)),
    ).toEqual([2, 83, 100, 107, 134, 5, 3]);
    expect(inputs.input_ids?.dims).toEqual([2, 7]);
    expect(ids(inputs.input_ids as { data: unknown })).toEqual([
      2, 83, 100, 107, 134, 5, 3, 2, 117, 6, 29, 3, 0, 0,
    ]);
    expect(ids(inputs.attention_mask as { data: unknown })).toEqual([
      1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    ]);
    expect(ids(inputs.token_type_ids as { data: unknown })).toEqual(new Array(14).fill(0));
    expect(inputs.input_ids?.data).toBeInstanceOf(BigInt64Array);
  });

  it('spells unknown words with letters, strips accents, and maps what it cannot spell to [UNK]', async () => {
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert' });
    // zoë -> z ##o ##e (BertNormalizer strips accents when lowercasing); 中 is split out and unknown
    const inputs = backbone.prepare(['Zoë 中']);
    expect(ids(inputs.input_ids as { data: unknown })).toEqual([2, 36, 61, 51, 1, 3]);
  });

  it('truncates to maxLength and keeps the closing [SEP], as sentence-transformers does', async () => {
    // given a budget of 6 tokens for a text of 6 words
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert', maxLength: 6 });
    // when
    const inputs = backbone.prepare(['the cat sat on the mat', 'hello']);
    // then
    expect(inputs.input_ids?.dims).toEqual([2, 6]);
    expect(ids(inputs.input_ids as { data: unknown })).toEqual([2, 83, 100, 102, 88, 3, 2, 110, 3, 0, 0, 0]);
    expect(ids(inputs.attention_mask as { data: unknown })).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    expect(backbone.countTokens('the cat sat on the mat')).toBe(6);
    expect(backbone.countTokens('hello')).toBe(3);
  });

  it('takes maxLength as the smallest of tokenizer_config, config.json, sentence_bert_config and the option', async () => {
    const config = JSON.parse(files.configJson ?? '{}');
    const withLimits = (
      modelMaxLength: number,
      positions: number,
      seqLength?: number,
    ): TextBackboneFiles => ({
      ...files,
      tokenizerConfigJson: JSON.stringify({
        ...JSON.parse(files.tokenizerConfigJson ?? '{}'),
        model_max_length: modelMaxLength,
      }),
      configJson: JSON.stringify({ ...config, max_position_embeddings: positions }),
      sentenceBertConfigJson:
        seqLength === undefined ? undefined : JSON.stringify({ max_seq_length: seqLength }),
    });
    const maxLength = async (f: TextBackboneFiles, option?: number) =>
      (await loadTextBackbone(f, { name: 'tiny-bert', ...(option ? { maxLength: option } : {}) })).config
        .maxLength;
    expect(await maxLength(files)).toBe(48);
    expect(await maxLength(withLimits(1e30, 64))).toBe(64);
    expect(await maxLength(withLimits(512, 64, 40))).toBe(40);
    expect(await maxLength(withLimits(512, 64), 16)).toBe(16);
    expect(await maxLength(withLimits(512, 64), 1000)).toBe(64);
    await expectError(
      loadTextBackbone(files, { name: 'tiny-bert', maxLength: 2 }),
      'INVALID_OPTIONS',
      /maxLength/,
    );
  });

  it('rebuilds the same tokenisation from the stored config and tokenizer.json alone', async () => {
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert', maxLength: 8 });
    const stored = parseTextBackboneConfig(JSON.parse(JSON.stringify(backbone.config)));
    const tokenizer = createTextTokenizer(stored, { tokenizerJson: files.tokenizerJson });
    const texts = ['a quick brown fox jumped over the lazy dog', 'hi'];
    expect(tokenizer.prepare(texts)).toEqual(backbone.prepare(texts));
  });
});

describe('text backbone: graph', () => {
  it('has the token inputs and one output, features [N, 32], with the pooler removed', async () => {
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert' });
    const session = await sessionOf(backbone.graph);
    expect(backbone.dims).toBe(32);
    expect(backbone.config).toMatchObject({
      kind: 'text',
      name: 'tiny-bert',
      dims: 32,
      maxLength: 48,
      pooling: 'mean',
      normalize: true,
      inputNames: ['input_ids', 'attention_mask', 'token_type_ids'],
    });
    expect(backbone.config.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect([...session.inputNames].sort()).toEqual(['attention_mask', 'input_ids', 'token_type_ids']);
    expect(session.outputNames).toEqual([FEATURES_OUTPUT]);
    const graph = onnx.ModelProto.decode(backbone.graph).graph as onnxProto.onnx.GraphProto;
    expect(graph.initializer.some((t) => t.name?.startsWith('pooler.'))).toBe(false);
    expect(graph.node.some((n) => n.opType === 'Tanh')).toBe(false);
  });

  // Hand computation in float64 on the encoder's own last_hidden_state, for each opset form of the appended nodes.
  describe.each([11, 14, 17])('pooling appended at opset %i', (opset) => {
    const texts = ['The quick brown fox jumped over the lazy dog.', 'hello', 'we need a refund please'];

    it.each([
      { pooling: 'mean', normalize: false },
      { pooling: 'mean', normalize: true },
      { pooling: 'cls', normalize: false },
      { pooling: 'cls', normalize: true },
    ] as const)(
      '$pooling pooling, normalize $normalize, matches a hand computation within 1e-5',
      async (options) => {
        // given the raw encoder and the backbone built from it
        const model = createTinyBertModel({ seed: 7, opset });
        const backbone = await loadTextBackbone({ ...files, model }, { name: 'tiny-bert', ...options });
        const inputs = backbone.prepare(texts);
        const raw = await (await sessionOf(model)).run(inputs, ['last_hidden_state']);
        const hidden = raw.last_hidden_state as unknown as { data: Float32Array; dims: number[] };
        const expected = handPool(hidden, ids(inputs.attention_mask as { data: unknown }), options);
        // when
        const features = await (await sessionOf(backbone.graph)).run(inputs, [FEATURES_OUTPUT]);
        // then
        expect(features[FEATURES_OUTPUT]?.dims).toEqual([texts.length, 32]);
        const got = features[FEATURES_OUTPUT]?.data as Float32Array;
        expected.forEach((row, i) => {
          expect(maxAbsDiff(got.subarray(i * 32, (i + 1) * 32), row)).toBeLessThanOrEqual(1e-5);
        });
      },
    );
  });

  it('gives a text the same embedding alone as in a padded batch (within 1e-5)', async () => {
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert', normalize: false });
    const alone = await embed(backbone, ['hello world']);
    const batched = await embed(backbone, [
      'a much longer sentence about a quick brown fox and a lazy dog',
      'hello world',
    ]);
    expect(maxAbsDiff(alone[0] as Float32Array, batched[1] as Float32Array)).toBeLessThanOrEqual(1e-5);
  });

  it('embedTexts runs in batches sorted by length and returns vectors in input order', async () => {
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert' });
    const session = await sessionOf(backbone.graph);
    const texts = [
      'hi',
      'the cat sat on the mat and it was a good day',
      'refund',
      'my card',
      'a new book to play',
    ];
    const progress: number[] = [];
    const batched = await embedTexts(backbone, session, texts, {
      batchSize: 2,
      onProgress: (done) => progress.push(done),
    });
    const oneByOne = await Promise.all(texts.map(async (t) => (await embedTexts(backbone, session, [t]))[0]));
    expect(progress).toEqual([2, 4, 5]);
    expect(batched).toHaveLength(texts.length);
    batched.forEach((v, i) => {
      expect(maxAbsDiff(v, oneByOne[i] as Float32Array)).toBeLessThanOrEqual(1e-5);
    });
    expect(await embedTexts(backbone, session, [])).toEqual([]);
  });
});

// Golden outputs of the seeded tiny BERT (seed 42, mean pooling, not normalised): the first 8 values and the
// norm. Generated once; a change means tokenisation, the generator or the pooling graph changed.
const GOLDEN = [
  {
    text: 'The cat sat on the mat.',
    first8: [0.5814951, -1.7879617, -0.7426748, -0.5179493, 1.1069192, 1.3641169, -0.4244166, -1.3178384],
    norm: 4.8830728,
  },
  {
    text: 'Hello world!',
    first8: [0.3753531, -2.3541393, -0.5304703, -0.9639622, 0.1414665, 1.6688942, 0.5328434, -0.2191194],
    norm: 5.1816267,
  },
  {
    text: 'Please help: I need a refund for my new card.',
    first8: [0.2242991, -1.2741321, -0.6996169, -0.8703337, 0.1927381, 1.7444756, -0.0695889, -0.2015444],
    norm: 4.2055543,
  },
];

describe('text backbone: golden outputs', () => {
  it('reproduces the stored embeddings of three sentences (within 1e-5)', async () => {
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert', normalize: false });
    const vectors = await embed(
      backbone,
      GOLDEN.map((g) => g.text),
    );
    GOLDEN.forEach((golden, i) => {
      const v = vectors[i] as Float32Array;
      expect(maxAbsDiff(v.slice(0, 8), golden.first8)).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(norm(v) - golden.norm)).toBeLessThanOrEqual(1e-5);
    });
    // The layout's own settings (2_Normalize) give the same directions with norm 1.
    const normalized = await embed(
      await loadTextBackbone(files, { name: 'tiny-bert' }),
      GOLDEN.map((g) => g.text),
    );
    normalized.forEach((v, i) => {
      expect(Math.abs(norm(v) - 1)).toBeLessThanOrEqual(1e-6);
      const scaled = (vectors[i] as Float32Array).map((x) => x / (GOLDEN[i] as { norm: number }).norm);
      expect(maxAbsDiff(v, scaled)).toBeLessThanOrEqual(1e-5);
    });
  });
});

describe('text backbone: independent check with transformers.js', () => {
  const texts = [
    'The cat sat on the mat.',
    'Hello world!',
    'A quick brown fox jumped over the lazy dog, and it was a good day to play in the world.',
    'refund',
    'I want my money back: the bank sent a new card and it does not work.',
  ];

  it('mean pooling + normalisation: the same embeddings as the feature-extraction pipeline within 1e-4', async () => {
    // given transformers.js pointed at the same files, remote loading off
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = root;
    const extractor = await pipeline('feature-extraction', 'tiny-bert', { dtype: 'fp32' });
    const backbone = await loadTextBackbone(files, { name: 'tiny-bert' });
    // when
    const reference = (await extractor(texts, { pooling: 'mean', normalize: true })).tolist() as number[][];
    const ours = await embed(backbone, texts);
    await extractor.dispose();
    // then
    expect(reference).toHaveLength(texts.length);
    const diff = Math.max(
      ...texts.map((_, i) => maxAbsDiff(ours[i] as Float32Array, reference[i] as number[])),
    );
    console.log(`transformers.js max abs diff (mean, normalised): ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
  });

  it('CLS pooling: the same embeddings as the pipeline with pooling "cls" within 1e-4', async () => {
    env.allowRemoteModels = false;
    env.localModelPath = root;
    const extractor = await pipeline('feature-extraction', 'tiny-bert-cls', { dtype: 'fp32' });
    const backbone = await loadTextBackbone(await readTextBackboneDir(path.join(root, 'tiny-bert-cls')), {
      name: 'tiny-bert-cls',
    });
    expect(backbone.config).toMatchObject({ pooling: 'cls', normalize: false });
    const reference = (await extractor(texts, { pooling: 'cls' })).tolist() as number[][];
    const ours = await embed(backbone, texts);
    await extractor.dispose();
    expect(reference).toHaveLength(texts.length);
    const diff = Math.max(
      ...texts.map((_, i) => maxAbsDiff(ours[i] as Float32Array, reference[i] as number[])),
    );
    console.log(`transformers.js max abs diff (cls): ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
  });
});

describe('text backbone: bad files', () => {
  it('a directory without tokenizer.json fails with BACKBONE_NOT_FOUND naming the file', async () => {
    const dir = path.join(root, 'incomplete');
    await writeTinyBertLayout(dir);
    await unlink(path.join(dir, 'tokenizer.json'));
    await expectError(readTextBackboneDir(dir), 'BACKBONE_NOT_FOUND', /tokenizer\.json is missing/);
  });

  it('an unsupported pooling mode fails with INVALID_OPTIONS', async () => {
    const poolingConfigJson = JSON.stringify({ word_embedding_dimension: 32, pooling_mode_max_tokens: true });
    await expectError(
      loadTextBackbone({ ...files, poolingConfigJson }, { name: 'tiny-bert' }),
      'INVALID_OPTIONS',
      /max_tokens/,
    );
  });

  it('a model without last_hidden_state, or not ONNX at all, fails with INVALID_OPTIONS', async () => {
    const model = onnx.ModelProto.decode(files.model);
    (model.graph as onnxProto.onnx.GraphProto).output.splice(0, 1);
    const noHidden = onnx.ModelProto.encode(model).finish();
    await expectError(
      loadTextBackbone({ ...files, model: noHidden }, { name: 'tiny-bert' }),
      'INVALID_OPTIONS',
      /last_hidden_state/,
    );
    await expectError(
      loadTextBackbone({ ...files, model: new TextEncoder().encode('not a model') }, { name: 'tiny-bert' }),
      'INVALID_OPTIONS',
      /not a valid ONNX/,
    );
  });

  it('a model with an input Graft cannot feed (position_ids) fails with INVALID_OPTIONS naming it', async () => {
    const model = onnx.ModelProto.decode(files.model);
    const graph = model.graph as onnxProto.onnx.GraphProto;
    graph.input.push({ ...graph.input[0], name: 'position_ids' });
    const withPositions = onnx.ModelProto.encode(model).finish();
    await expectError(
      loadTextBackbone({ ...files, model: withPositions }, { name: 'tiny-bert' }),
      'INVALID_OPTIONS',
      /inputs Graft cannot feed: position_ids/,
    );
  });

  it('files that do not belong together, bad JSON and a bad name fail with INVALID_OPTIONS', async () => {
    const configJson = JSON.stringify({ ...JSON.parse(files.configJson ?? '{}'), hidden_size: 384 });
    await expectError(
      loadTextBackbone({ ...files, configJson }, { name: 'tiny-bert' }),
      'INVALID_OPTIONS',
      /384/,
    );
    await expectError(
      loadTextBackbone({ ...files, tokenizerJson: '{' }, { name: 'tiny-bert' }),
      'INVALID_OPTIONS',
      /tokenizer\.json is not valid JSON/,
    );
    await expectError(loadTextBackbone(files, { name: 'Tiny BERT' }), 'INVALID_OPTIONS', /name/);
    expect(() => parseTextBackboneConfig({ kind: 'text', name: 'x' })).toThrow(GraftError);
  });

  it('the generated model is deterministic: same seed, same bytes; another seed, other weights', () => {
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
    expect(same(createTinyBertModel({ seed: 42 }), files.model)).toBe(true);
    expect(same(createTinyBertModel({ seed: 43 }), files.model)).toBe(false);
  });
});
