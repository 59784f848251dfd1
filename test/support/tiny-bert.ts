// A tiny BERT in the Hugging Face sentence-transformer layout, generated in TypeScript so that no binary is
// committed. The graph uses the ops of a MiniLM exported by torch.onnx / optimum (Gather embeddings, Slice of the
// position buffer, the (1 - mask) * -10000 extended attention mask, Reshape/Transpose heads, Softmax attention,
// LayerNormalization or its decomposition, Gelu in its Erf form, residuals), with seeded random weights.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { createRng } from '../../src/engine/rng.js';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const AttrType = onnx.AttributeProto.AttributeType;

const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const PUNCTUATION = ['!', "'", ',', '-', '.', '?'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz'.split('');
const DIGITS = '0123456789'.split('');
const WORDS = [
  'the',
  'a',
  'an',
  'is',
  'was',
  'on',
  'in',
  'of',
  'to',
  'and',
  'it',
  'this',
  'that',
  'my',
  'i',
  'you',
  'we',
  'cat',
  'dog',
  'sat',
  'mat',
  'quick',
  'brown',
  'fox',
  'jump',
  'over',
  'lazy',
  'hello',
  'world',
  'good',
  'bad',
  'model',
  'test',
  'card',
  'money',
  'bank',
  'refund',
  'please',
  'help',
  'need',
  'new',
  'play',
  'run',
  'book',
  'want',
  'love',
  'hate',
  'movie',
  'day',
  'time',
];
const SUFFIXES = ['##s', '##ed', '##ing', '##er', '##ly', '##ness'];

/**
 * The WordPiece vocabulary: ids are indices. [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then punctuation,
 * single letters and digits (so every lowercase ASCII word can be spelled), their `##` continuations, whole
 * words and a few suffixes.
 */
export const TINY_BERT_VOCAB: readonly string[] = [
  ...SPECIALS,
  ...PUNCTUATION,
  ...LETTERS,
  ...DIGITS,
  ...LETTERS.map((l) => `##${l}`),
  ...DIGITS.map((d) => `##${d}`),
  ...WORDS,
  ...SUFFIXES,
];

export interface TinyBertOptions {
  /** Seed of the weights: same seed, same model, same embeddings. @default 42 */
  seed?: number;
  /** Default-domain opset; from 17 LayerNormalization is one op, below it is decomposed. @default 14 */
  opset?: number;
  /** @default 32 */
  hidden?: number;
  /** @default 2 */
  layers?: number;
  /** @default 4 */
  heads?: number;
  /** @default 64 */
  intermediate?: number;
  /** max_position_embeddings in config.json. @default 64 */
  maxPositions?: number;
  /** model_max_length in tokenizer_config.json. @default 48 */
  modelMaxLength?: number;
  /** The pooling of 1_Pooling/config.json. @default 'mean' */
  pooling?: 'mean' | 'cls';
  /** Whether modules.json lists a Normalize module (2_Normalize). @default true */
  normalize?: boolean;
  /** Adds BERT's `pooler_output` (dense + tanh on [CLS]) as a second output, like a full BertModel export. @default true */
  pooler?: boolean;
}

type Resolved = Required<TinyBertOptions>;

function resolve(options: TinyBertOptions): Resolved {
  return {
    seed: 42,
    opset: 14,
    hidden: 32,
    layers: 2,
    heads: 4,
    intermediate: 64,
    maxPositions: 64,
    modelMaxLength: 48,
    pooling: 'mean',
    normalize: true,
    pooler: true,
    ...options,
  };
}

/** Builds a graph node by node, naming intermediate tensors. */
class GraphBuilder {
  readonly nodes: onnxProto.onnx.INodeProto[] = [];
  readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  #count = 0;

  constructor(readonly opset: number) {}

  node(
    opType: string,
    inputs: string[],
    attributes: onnxProto.onnx.IAttributeProto[] = [],
    output?: string,
  ): string {
    const name = `${opType}_${this.#count++}`;
    const out = output ?? `/${name}/output_0`;
    this.nodes.push({ opType, name, input: inputs, output: [out], attribute: attributes });
    return out;
  }

  float(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push({ name, dataType: FLOAT, dims, rawData: bytesOf(data) });
    return name;
  }

  int64(name: string, dims: number[], values: number[]): string {
    const data = BigInt64Array.from(values.map(BigInt));
    this.initializers.push({ name, dataType: INT64, dims, rawData: bytesOf(data) });
    return name;
  }

  scalar(name: string, value: number): string {
    return this.float(name, [], Float32Array.of(value));
  }

  /** Unsqueeze binds `axes` as an attribute before opset 13 and as an input from 13, like real exports. */
  unsqueeze(input: string, axes: number[]): string {
    if (this.opset >= 13) {
      const axesName = this.int64(`/unsqueeze_axes_${this.#count}`, [axes.length], axes);
      return this.node('Unsqueeze', [input, axesName]);
    }
    return this.node('Unsqueeze', [input], [ints('axes', axes)]);
  }
}

const bytesOf = (data: Float32Array | BigInt64Array): Uint8Array =>
  new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
const int = (name: string, i: number): onnxProto.onnx.IAttributeProto => ({ name, type: AttrType.INT, i });
const ints = (name: string, values: number[]): onnxProto.onnx.IAttributeProto => ({
  name,
  type: AttrType.INTS,
  ints: values,
});
const float = (name: string, f: number): onnxProto.onnx.IAttributeProto => ({
  name,
  type: AttrType.FLOAT,
  f,
});

function valueInfo(
  name: string,
  elemType: number,
  shape: (number | string)[],
): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

/** Normal(0, std) draws from the seeded generator (Box-Muller). */
function normals(rng: ReturnType<typeof createRng>, count: number, std: number, mean = 0): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u = 1 - rng.next();
    const v = rng.next();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = mean + r * Math.cos(2 * Math.PI * v);
    if (i + 1 < count) out[i + 1] = mean + r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** The ONNX bytes of the tiny BERT: inputs input_ids, attention_mask, token_type_ids [batch, sequence] int64. */
export function createTinyBertModel(options: TinyBertOptions = {}): Uint8Array {
  const o = resolve(options);
  const { hidden: H, heads, intermediate: I, maxPositions: P } = o;
  if (H % heads !== 0) throw new Error(`hidden (${H}) must be a multiple of heads (${heads})`);
  const headDim = H / heads;
  const V = TINY_BERT_VOCAB.length;
  const rng = createRng(o.seed);
  const g = new GraphBuilder(o.opset);

  const layerNorm = (x: string, prefix: string): string => {
    const gamma = g.float(`${prefix}.weight`, [H], normals(rng, H, 0.1, 1));
    const beta = g.float(`${prefix}.bias`, [H], normals(rng, H, 0.1));
    if (o.opset >= 17) {
      return g.node('LayerNormalization', [x, gamma, beta], [int('axis', -1), float('epsilon', 1e-12)]);
    }
    // torch.onnx's decomposition before opset 17 (ReduceMean binds axes as an attribute up to opset 17).
    const mean = g.node('ReduceMean', [x], [ints('axes', [-1]), int('keepdims', 1)]);
    const centred = g.node('Sub', [x, mean]);
    const squared = g.node('Pow', [centred, g.scalar(`${prefix}.two`, 2)]);
    const variance = g.node('ReduceMean', [squared], [ints('axes', [-1]), int('keepdims', 1)]);
    const std = g.node('Sqrt', [g.node('Add', [variance, g.scalar(`${prefix}.eps`, 1e-12)])]);
    const normed = g.node('Div', [centred, std]);
    return g.node('Add', [g.node('Mul', [normed, gamma]), beta]);
  };
  const linear = (x: string, prefix: string, fanIn: number, fanOut: number): string => {
    // torch exports nn.Linear as MatMul by the transposed weight [in, out], then Add of the bias.
    const w = g.float(
      `${prefix}.weight`,
      [fanIn, fanOut],
      normals(rng, fanIn * fanOut, 1 / Math.sqrt(fanIn)),
    );
    const b = g.float(`${prefix}.bias`, [fanOut], normals(rng, fanOut, 0.1));
    return g.node('Add', [g.node('MatMul', [x, w]), b]);
  };

  // Embeddings: word + token type + position (a Slice of the position_ids buffer up to the sequence length).
  const wordEmb = g.float('embeddings.word_embeddings.weight', [V, H], normals(rng, V * H, 1));
  const posEmb = g.float('embeddings.position_embeddings.weight', [P, H], normals(rng, P * H, 0.5));
  const typeEmb = g.float('embeddings.token_type_embeddings.weight', [2, H], normals(rng, 2 * H, 0.5));
  const posBuffer = g.int64(
    'embeddings.position_ids',
    [1, P],
    Array.from({ length: P }, (_, i) => i),
  );
  const seqLen = g.node(
    'Gather',
    [g.node('Shape', ['input_ids']), g.int64('/const_one', [], [1])],
    [int('axis', 0)],
  );
  const positionIds = g.node('Slice', [
    posBuffer,
    g.int64('/slice_starts', [1], [0]),
    g.unsqueeze(seqLen, [0]),
    g.int64('/slice_axes', [1], [1]),
  ]);
  const words = g.node('Gather', [wordEmb, 'input_ids']);
  const types = g.node('Gather', [typeEmb, 'token_type_ids']);
  const positions = g.node('Gather', [posEmb, positionIds]);
  let x = layerNorm(g.node('Add', [g.node('Add', [words, types]), positions]), 'embeddings.LayerNorm');

  // Extended attention mask [N, 1, 1, S]: 0 where attended, -10000 on padding.
  const maskFloat = g.node('Cast', [g.unsqueeze('attention_mask', [1, 2])], [int('to', FLOAT)]);
  const inverted = g.node('Sub', [g.scalar('/one', 1), maskFloat]);
  const extendedMask = g.node('Mul', [inverted, g.scalar('/mask_value', -10000)]);

  const headsShape = g.int64('/heads_shape', [4], [0, 0, heads, headDim]);
  const mergedShape = g.int64('/merged_shape', [3], [0, 0, H]);
  const scale = g.scalar('/attention_scale', Math.sqrt(headDim));
  for (let layer = 0; layer < o.layers; layer++) {
    const p = `encoder.layer.${layer}`;
    const split = (t: string, perm: number[]) =>
      g.node('Transpose', [g.node('Reshape', [t, headsShape])], [ints('perm', perm)]);
    const q = split(linear(x, `${p}.attention.self.query`, H, H), [0, 2, 1, 3]);
    const k = split(linear(x, `${p}.attention.self.key`, H, H), [0, 2, 3, 1]);
    const v = split(linear(x, `${p}.attention.self.value`, H, H), [0, 2, 1, 3]);
    const scores = g.node('Add', [g.node('Div', [g.node('MatMul', [q, k]), scale]), extendedMask]);
    const probs = g.node('Softmax', [scores], [int('axis', -1)]);
    const context = g.node('Transpose', [g.node('MatMul', [probs, v])], [ints('perm', [0, 2, 1, 3])]);
    const merged = g.node('Reshape', [context, mergedShape]);
    const attention = linear(merged, `${p}.attention.output.dense`, H, H);
    x = layerNorm(g.node('Add', [attention, x]), `${p}.attention.output.LayerNorm`);
    // Gelu in its exact Erf form: 0.5 * h * (1 + erf(h / sqrt(2))).
    const h = linear(x, `${p}.intermediate.dense`, H, I);
    const erf = g.node('Erf', [g.node('Div', [h, g.scalar(`${p}.sqrt2`, Math.SQRT2)])]);
    const gelu = g.node('Mul', [
      g.node('Mul', [h, g.node('Add', [erf, g.scalar(`${p}.one`, 1)])]),
      g.scalar(`${p}.half`, 0.5),
    ]);
    const out = linear(gelu, `${p}.output.dense`, I, H);
    x = layerNorm(g.node('Add', [out, x]), `${p}.output.LayerNorm`);
  }
  g.nodes.push({ opType: 'Identity', name: 'last_hidden_state', input: [x], output: ['last_hidden_state'] });

  const outputs = [valueInfo('last_hidden_state', FLOAT, ['batch_size', 'sequence_length', H])];
  if (o.pooler) {
    const first = g.node('Gather', [x, g.int64('/first_token', [], [0])], [int('axis', 1)]);
    const dense = linear(first, 'pooler.dense', H, H);
    g.node('Tanh', [dense], [], 'pooler_output');
    outputs.push(valueInfo('pooler_output', FLOAT, ['batch_size', H]));
  }

  const tokenInput = (name: string) => valueInfo(name, INT64, ['batch_size', 'sequence_length']);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: o.opset }],
    producerName: 'graft-tiny-bert',
    producerVersion: '1',
    graph: {
      name: 'tiny-bert',
      node: g.nodes,
      initializer: g.initializers,
      input: [tokenInput('input_ids'), tokenInput('attention_mask'), tokenInput('token_type_ids')],
      output: outputs,
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** tokenizer.json of the tiny BERT: BertNormalizer (lowercase), BertPreTokenizer, WordPiece, [CLS] $A [SEP]. */
export function createTinyBertTokenizerJson(): Record<string, unknown> {
  const id = (token: string) => TINY_BERT_VOCAB.indexOf(token);
  const special = (token: string) => ({
    id: id(token),
    content: token,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const specialToken = (token: string, typeId: number) => ({ SpecialToken: { id: token, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map(special),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [specialToken('[CLS]', 0), { Sequence: { id: 'A', type_id: 0 } }, specialToken('[SEP]', 0)],
      pair: [
        specialToken('[CLS]', 0),
        { Sequence: { id: 'A', type_id: 0 } },
        specialToken('[SEP]', 0),
        { Sequence: { id: 'B', type_id: 1 } },
        specialToken('[SEP]', 1),
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [id('[CLS]')], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [id('[SEP]')], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(TINY_BERT_VOCAB.map((token, i) => [token, i])),
    },
  };
}

/** Every file of the layout, keyed by its path in the repository (text files as strings). */
export function createTinyBertLayout(options: TinyBertOptions = {}): Record<string, Uint8Array | string> {
  const o = resolve(options);
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  const modules = [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    ...(o.normalize
      ? [{ idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' }]
      : []),
  ];
  return {
    'onnx/model.onnx': createTinyBertModel(o),
    'tokenizer.json': json(createTinyBertTokenizerJson()),
    'tokenizer_config.json': json({
      tokenizer_class: 'BertTokenizer',
      do_lower_case: true,
      model_max_length: o.modelMaxLength,
      padding_side: 'right',
      truncation_side: 'right',
      clean_up_tokenization_spaces: true,
      tokenize_chinese_chars: true,
      strip_accents: null,
      cls_token: '[CLS]',
      sep_token: '[SEP]',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
      mask_token: '[MASK]',
    }),
    'special_tokens_map.json': json({
      cls_token: '[CLS]',
      sep_token: '[SEP]',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
      mask_token: '[MASK]',
    }),
    'config.json': json({
      architectures: ['BertModel'],
      model_type: 'bert',
      vocab_size: TINY_BERT_VOCAB.length,
      hidden_size: o.hidden,
      num_hidden_layers: o.layers,
      num_attention_heads: o.heads,
      intermediate_size: o.intermediate,
      hidden_act: 'gelu',
      hidden_dropout_prob: 0.1,
      attention_probs_dropout_prob: 0.1,
      max_position_embeddings: o.maxPositions,
      type_vocab_size: 2,
      initializer_range: 0.02,
      layer_norm_eps: 1e-12,
      pad_token_id: 0,
      position_embedding_type: 'absolute',
      torch_dtype: 'float32',
    }),
    'modules.json': json(modules),
    'sentence_bert_config.json': json({ max_seq_length: o.modelMaxLength, do_lower_case: false }),
    '1_Pooling/config.json': json({
      word_embedding_dimension: o.hidden,
      pooling_mode_cls_token: o.pooling === 'cls',
      pooling_mode_mean_tokens: o.pooling === 'mean',
      pooling_mode_max_tokens: false,
      pooling_mode_mean_sqrt_len_tokens: false,
      pooling_mode_weightedmean_tokens: false,
      pooling_mode_lasttoken: false,
      include_prompt: true,
    }),
  };
}

/** Writes the whole layout into `dir` (created if needed); returns the paths written, relative to `dir`. */
export async function writeTinyBertLayout(dir: string, options: TinyBertOptions = {}): Promise<string[]> {
  const files = createTinyBertLayout(options);
  for (const [name, content] of Object.entries(files)) {
    const target = path.join(dir, name);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, content);
  }
  return Object.keys(files);
}
