import onnxProto from 'onnx-proto';
import { GraftError } from '../errors.js';
import { type BackboneConfig, parseBackbone } from './backbone.js';
import { FEATURES_OUTPUT } from './backbones/dense.js';
import { type CosineHead, headParameterCount, NORM_EPSILON, type TrainedHead } from './heads.js';
import {
  dataInputs,
  getGraph,
  graftModel,
  loadModel,
  opsetVersion,
  renameTensor,
  saveModel,
  tensorNames,
  toNumber,
  uniqueName,
} from './onnx-graph.js';
import type { SoftmaxHead } from './softmax-head.js';

const { onnx } = onnxProto;

/**
 * Version of the model layout; a Predictor refuses a format it does not know. Format 1: a hash head alone
 * (`features` in). Format 2: any backbone, the head of any strategy, the tokenizer in the metadata for text.
 */
export const MODEL_FORMAT = '2';
const READABLE_FORMATS = ['1', '2'];
export const FEATURES_INPUT = 'features';
export const LOGITS_OUTPUT = 'logits';
export const PROBABILITIES_OUTPUT = 'probabilities';
/** The opset of a hash model (a head alone); a head grafted onto a backbone keeps the backbone's opset. */
const HASH_OPSET = 17;
const IR_VERSION = 8;
/** The lowest opset the head's operators are written for (numpy broadcasting of Add/Div/Max, MatMul). */
const MIN_HEAD_OPSET = 8;
const PREFIX = 'graft/head';

/** A protobuf message holds at most 2 GiB: keep the head's weights well under it. */
export const MAX_HEAD_PARAMETERS = 2 ** 28;

export interface TokenizerFiles {
  tokenizerJson: string;
  tokenizerConfigJson?: string | undefined;
}

export interface ExportModelOptions {
  head: TrainedHead;
  temperature: number;
  labels: readonly string[];
  backbone: BackboneConfig;
  /** Dense backbones: the backbone graph, whose output `features` [N, dims] the head reads. */
  backboneGraph?: Uint8Array | undefined;
  /** Text backbones: the tokenizer files, kept in the metadata so the model file is all a Predictor needs. */
  tokenizer?: TokenizerFiles | undefined;
  /** The strategy that trained the head (metadata only). */
  strategy?: string | undefined;
  /** @default '0.1.0' */
  producerVersion?: string;
}

/** What a Graft model says about itself in `metadata_props`. */
export interface GraftModelMetadata {
  format: string;
  labels: string[];
  backbone: BackboneConfig;
  temperature: number | undefined;
  strategy: string | undefined;
  /** Text models: the tokenizer files, to rebuild the tokenisation. */
  tokenizer: TokenizerFiles | undefined;
}

const floatTensor = (name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto => ({
  name,
  dataType: onnx.TensorProto.DataType.FLOAT,
  dims,
  // raw_data is little-endian, like every platform onnxruntime-node ships for.
  rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)),
});

function floatValue(name: string, shape: (number | string)[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

const node = (
  opType: string,
  input: string[],
  output: string,
  attribute: onnxProto.onnx.IAttributeProto[] = [],
): onnxProto.onnx.INodeProto => ({
  opType,
  name: `${PREFIX}/${opType.toLowerCase()}:${output}`,
  input,
  output: [output],
  attribute,
});

/**
 * The nodes and weights of a head: `features` [N, dims] -> logits [N, C] -> Div T -> Softmax = probabilities.
 * Written with operators whose meaning is the same from opset 8 on (Softmax on a 2-D input with axis 1), so the
 * head can join a backbone of any opset without raising it.
 */
function headGraph(head: TrainedHead, temperature: number): onnxProto.onnx.IGraphProto {
  const initializer: onnxProto.onnx.ITensorProto[] = [];
  const nodes: onnxProto.onnx.INodeProto[] = [];
  const t = (name: string) => `${PREFIX}/${name}`;
  const { dims, classes } = head;
  switch (head.kind) {
    case 'linear':
      initializer.push(floatTensor(t('weight'), [dims, classes], head.weights));
      initializer.push(floatTensor(t('bias'), [classes], head.bias));
      nodes.push(node('MatMul', [FEATURES_INPUT, t('weight')], t('matmul')));
      nodes.push(node('Add', [t('matmul'), t('bias')], LOGITS_OUTPUT));
      break;
    case 'mlp':
      initializer.push(floatTensor(t('hidden.weight'), [dims, head.hidden], head.w1));
      initializer.push(floatTensor(t('hidden.bias'), [head.hidden], head.b1));
      initializer.push(floatTensor(t('output.weight'), [head.hidden, classes], head.w2));
      initializer.push(floatTensor(t('output.bias'), [classes], head.b2));
      nodes.push(node('MatMul', [FEATURES_INPUT, t('hidden.weight')], t('hidden.matmul')));
      nodes.push(node('Add', [t('hidden.matmul'), t('hidden.bias')], t('hidden.preactivation')));
      nodes.push(node('Relu', [t('hidden.preactivation')], t('hidden')));
      nodes.push(node('MatMul', [t('hidden'), t('output.weight')], t('output.matmul')));
      nodes.push(node('Add', [t('output.matmul'), t('output.bias')], LOGITS_OUTPUT));
      break;
    case 'cosine':
      nodes.push(...cosineNodes(head, initializer, t));
      break;
  }
  initializer.push(floatTensor(t('temperature'), [], Float32Array.of(temperature)));
  nodes.push(node('Div', [LOGITS_OUTPUT, t('temperature')], t('scaled')));
  nodes.push(
    node('Softmax', [t('scaled')], PROBABILITIES_OUTPUT, [
      { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 },
    ]),
  );
  return {
    name: 'graft-head',
    initializer,
    input: [floatValue(FEATURES_INPUT, ['N', dims])],
    output: [floatValue(LOGITS_OUTPUT, ['N', classes]), floatValue(PROBABILITIES_OUTPUT, ['N', classes])],
    node: nodes,
  };
}

/** normalize(x - center) P, with the norm as MatMul(x * x, ones) (no Reduce op, whose form changes with the opset). */
function cosineNodes(
  head: CosineHead,
  initializer: onnxProto.onnx.ITensorProto[],
  t: (name: string) => string,
): onnxProto.onnx.INodeProto[] {
  const { dims, classes } = head;
  const nodes: onnxProto.onnx.INodeProto[] = [];
  let x = FEATURES_INPUT;
  if (head.center) {
    initializer.push(floatTensor(t('center'), [dims], head.center));
    nodes.push(node('Sub', [x, t('center')], t('centered')));
    x = t('centered');
  }
  initializer.push(floatTensor(t('ones'), [dims, 1], new Float32Array(dims).fill(1)));
  initializer.push(floatTensor(t('norm_floor'), [], Float32Array.of(NORM_EPSILON)));
  initializer.push(floatTensor(t('prototypes'), [dims, classes], head.prototypes));
  nodes.push(node('Mul', [x, x], t('squares')));
  nodes.push(node('MatMul', [t('squares'), t('ones')], t('sum_squares')));
  nodes.push(node('Sqrt', [t('sum_squares')], t('norm')));
  nodes.push(node('Max', [t('norm'), t('norm_floor')], t('norm_floored')));
  nodes.push(node('Div', [x, t('norm_floored')], t('normalized')));
  nodes.push(node('MatMul', [t('normalized'), t('prototypes')], LOGITS_OUTPUT));
  return nodes;
}

function metadataProps(options: ExportModelOptions): { key: string; value: string }[] {
  const { labels, backbone, temperature, strategy, tokenizer } = options;
  const props = [
    { key: 'graft.format', value: MODEL_FORMAT },
    { key: 'graft.labels', value: JSON.stringify(labels) },
    { key: 'graft.backbone', value: JSON.stringify(backbone) },
    { key: 'graft.temperature', value: String(temperature) },
  ];
  if (strategy) props.push({ key: 'graft.strategy', value: strategy });
  if (tokenizer) {
    props.push({ key: 'graft.tokenizer', value: tokenizer.tokenizerJson });
    if (tokenizer.tokenizerConfigJson !== undefined) {
      props.push({ key: 'graft.tokenizer_config', value: tokenizer.tokenizerConfigJson });
    }
  }
  return props;
}

/**
 * One self-contained ONNX model: for a hash backbone the head alone (`features` [N, dims] in, hashing stays in
 * TypeScript); for a dense backbone its graph (text: encoder + pooling; image: the cut CNN) with the head
 * grafted onto `features`, so the inputs are the backbone's (token ids, pixels). Outputs: `logits` and
 * `probabilities` = softmax(logits / T). Labels, backbone, temperature, strategy and, for text, the tokenizer
 * files travel in `metadata_props`.
 */
export function exportModel(options: ExportModelOptions): Uint8Array {
  const { head, temperature, labels, producerVersion = '0.1.0' } = options;
  const backbone = parseBackbone(options.backbone);
  if (labels.length !== head.classes) {
    throw new GraftError(
      'INTERNAL',
      `exportModel: ${labels.length} labels for a head of ${head.classes} classes.`,
    );
  }
  if (head.dims !== backbone.dims) {
    throw new GraftError(
      'INTERNAL',
      `exportModel: a head of ${head.dims} inputs for a backbone of ${backbone.dims}.`,
    );
  }
  if (headParameterCount(head) > MAX_HEAD_PARAMETERS) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `A head of ${headParameterCount(head)} weights is too big for one ONNX file (at most ${MAX_HEAD_PARAMETERS}): use fewer hidden units or a backbone with fewer dims.`,
    );
  }
  if (backbone.kind === 'text' && !options.tokenizer) {
    throw new GraftError('INTERNAL', 'exportModel: a text model needs its tokenizer files in the metadata.');
  }
  const graph = headGraph(head, temperature);
  const props = metadataProps({ ...options, backbone });
  if (backbone.kind === 'hash') {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: HASH_OPSET }],
      producerName: 'graft',
      producerVersion,
      graph,
      metadataProps: props,
    });
    return onnx.ModelProto.encode(model).finish();
  }
  if (!options.backboneGraph) {
    throw new GraftError('INTERNAL', `exportModel: the ${backbone.kind} backbone's graph is missing.`);
  }
  const base = loadModel(options.backboneGraph);
  // The head's output names are the model's contract: an internal tensor of the backbone with one of them moves.
  for (const name of [LOGITS_OUTPUT, PROBABILITIES_OUTPUT]) {
    if (tensorNames(base).includes(name)) renameTensor(base, name, uniqueName(base, `backbone/${name}`));
  }
  const opset = Math.max(opsetVersion(base), MIN_HEAD_OPSET);
  const headModel = onnx.ModelProto.create({
    irVersion: Math.max(toNumber(base.irVersion), 7),
    opsetImport: [{ domain: '', version: opset }],
    producerName: 'graft',
    producerVersion,
    graph,
    metadataProps: props,
  });
  const joined = loadModel(
    graftModel(saveModel(base), onnx.ModelProto.encode(headModel).finish(), {
      connect: { [FEATURES_INPUT]: FEATURES_OUTPUT },
    }),
  );
  getGraph(joined).name = `graft-${backbone.kind}-${backbone.name}`;
  return saveModel(joined);
}

/** A linear head of a hash backbone alone (format 2; kept for callers of the first engine API). */
export function exportHeadToOnnx(options: {
  head: SoftmaxHead;
  temperature: number;
  labels: readonly string[];
  backbone: BackboneConfig;
  producerVersion?: string;
}): Uint8Array {
  const { head, ...rest } = options;
  return exportModel({
    ...rest,
    head: { kind: 'linear', dims: head.dims, classes: head.classes, weights: head.weights, bias: head.bias },
  });
}

/** Reads a Graft model's metadata (onnxruntime-node does not expose `metadata_props`); throws BAD_REQUEST. */
export function readModelMetadata(bytes: Uint8Array): GraftModelMetadata {
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new GraftError('BAD_REQUEST', 'The model file is not a valid ONNX model.', { cause: err });
  }
  const props = new Map(model.metadataProps.map((p) => [p.key ?? '', p.value ?? '']));
  const format = props.get('graft.format');
  if (format === undefined || !READABLE_FORMATS.includes(format)) {
    throw new GraftError(
      'BAD_REQUEST',
      format === undefined
        ? 'The model has no graft.format metadata: it was not exported by Graft.'
        : `The model has graft.format ${JSON.stringify(format)}; this version of Graft reads formats ${READABLE_FORMATS.join(' and ')}.`,
    );
  }
  let labels: unknown;
  let backbone: unknown;
  try {
    labels = JSON.parse(props.get('graft.labels') ?? 'null');
    backbone = JSON.parse(props.get('graft.backbone') ?? 'null');
  } catch (err) {
    throw new GraftError(
      'BAD_REQUEST',
      'The model metadata graft.labels / graft.backbone is not valid JSON.',
      {
        cause: err,
      },
    );
  }
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((l) => typeof l === 'string')) {
    throw new GraftError(
      'BAD_REQUEST',
      'The model metadata graft.labels must be a JSON array of 2 or more strings.',
    );
  }
  let config: BackboneConfig;
  try {
    config = parseBackbone(backbone);
  } catch (err) {
    throw new GraftError(
      'BAD_REQUEST',
      `The model metadata graft.backbone is invalid: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const inputs = model.graph ? dataInputs(model) : [];
  const inputNames = inputs.map((i) => i.name ?? '');
  const tokenizerJson = props.get('graft.tokenizer');
  const tokenizerConfigJson = props.get('graft.tokenizer_config');
  switch (config.kind) {
    case 'hash': {
      const features = inputs.find((input) => input.name === FEATURES_INPUT);
      // int64 fields decode as protobufjs Longs: read them through their decimal string.
      const dimValue = features?.type?.tensorType?.shape?.dim?.[1]?.dimValue;
      const width = dimValue === undefined || dimValue === null ? undefined : Number(String(dimValue));
      if (width !== config.dims) {
        throw new GraftError(
          'BAD_REQUEST',
          `The model's "${FEATURES_INPUT}" input must be [N, ${config.dims}] (the backbone's dims); it is ${width === undefined ? 'missing' : `[N, ${width}]`}.`,
        );
      }
      break;
    }
    case 'text': {
      const missing = config.inputNames.filter((n) => !inputNames.includes(n));
      if (missing.length > 0 || tokenizerJson === undefined) {
        throw new GraftError(
          'BAD_REQUEST',
          missing.length > 0
            ? `The text model must take ${config.inputNames.join(', ')}; it lacks ${missing.join(', ')}.`
            : 'The text model has no graft.tokenizer metadata (tokenizer.json): it cannot tokenise its inputs.',
        );
      }
      break;
    }
    case 'image':
      if (!inputNames.includes(config.input.name)) {
        throw new GraftError(
          'BAD_REQUEST',
          `The image model must take "${config.input.name}"; it takes ${inputNames.join(', ') || 'nothing'}.`,
        );
      }
      break;
  }
  const temperature = Number(props.get('graft.temperature'));
  return {
    format,
    labels,
    backbone: config,
    temperature: Number.isFinite(temperature) ? temperature : undefined,
    strategy: props.get('graft.strategy'),
    tokenizer:
      tokenizerJson === undefined
        ? undefined
        : { tokenizerJson, ...(tokenizerConfigJson === undefined ? {} : { tokenizerConfigJson }) },
  };
}
