import onnxProto from 'onnx-proto';
import { GraftError } from '../errors.js';
import { type BackboneConfig, parseBackbone } from './backbone.js';
import type { SoftmaxHead } from './softmax-head.js';

const { onnx } = onnxProto;

/** Version of the model layout below; a Predictor refuses a model of a format it does not know. */
export const MODEL_FORMAT = '1';
export const FEATURES_INPUT = 'features';
export const LOGITS_OUTPUT = 'logits';
export const PROBABILITIES_OUTPUT = 'probabilities';
const OPSET = 17;
const IR_VERSION = 8;

export interface ExportHeadOptions {
  head: SoftmaxHead;
  temperature: number;
  labels: readonly string[];
  backbone: BackboneConfig;
  /** @default 'graft' */
  producerVersion?: string;
}

/** What a Graft model says about itself in `metadata_props`. */
export interface GraftModelMetadata {
  format: string;
  labels: string[];
  backbone: BackboneConfig;
  temperature: number | undefined;
}

function floatTensor(name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto {
  // raw_data is little-endian, like every platform onnxruntime-node ships for.
  const bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return { name, dataType: onnx.TensorProto.DataType.FLOAT, dims, rawData: bytes };
}

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

/**
 * One self-contained ONNX model of a trained head:
 * `features` [N, dims] -> MatMul W -> Add b = `logits` [N, C] -> Div T -> Softmax(-1) = `probabilities` [N, C].
 * The hashing stays in TypeScript in front of the model; labels and backbone travel in `metadata_props`.
 */
export function exportHeadToOnnx(options: ExportHeadOptions): Uint8Array {
  const { head, temperature, labels, backbone, producerVersion = '0.1.0' } = options;
  if (labels.length !== head.classes) {
    throw new GraftError(
      'INTERNAL',
      `exportHeadToOnnx: ${labels.length} labels for a head of ${head.classes} classes.`,
    );
  }
  const { dims, classes } = head;
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'graft-head',
    initializer: [
      floatTensor('head.weight', [dims, classes], head.weights),
      floatTensor('head.bias', [classes], head.bias),
      floatTensor('head.temperature', [], Float32Array.of(temperature)),
    ],
    input: [floatValue(FEATURES_INPUT, ['N', dims])],
    output: [floatValue(LOGITS_OUTPUT, ['N', classes]), floatValue(PROBABILITIES_OUTPUT, ['N', classes])],
    node: [
      { opType: 'MatMul', name: 'matmul', input: [FEATURES_INPUT, 'head.weight'], output: ['head.matmul'] },
      { opType: 'Add', name: 'add_bias', input: ['head.matmul', 'head.bias'], output: [LOGITS_OUTPUT] },
      {
        opType: 'Div',
        name: 'temperature',
        input: [LOGITS_OUTPUT, 'head.temperature'],
        output: ['head.scaled'],
      },
      {
        opType: 'Softmax',
        name: 'softmax',
        input: ['head.scaled'],
        output: [PROBABILITIES_OUTPUT],
        attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }],
      },
    ],
  };
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'graft',
    producerVersion,
    graph,
    metadataProps: [
      { key: 'graft.format', value: MODEL_FORMAT },
      { key: 'graft.labels', value: JSON.stringify(labels) },
      { key: 'graft.backbone', value: JSON.stringify(backbone) },
      { key: 'graft.temperature', value: String(temperature) },
    ],
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Reads a Graft model's metadata (onnxruntime-node does not expose `metadata_props`); throws BAD_REQUEST. */
export function readModelMetadata(bytes: Uint8Array): GraftModelMetadata {
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new GraftError('BAD_REQUEST', 'The model file is not a valid ONNX model.', { cause: err });
  }
  const props = new Map(model.metadataProps.map((p) => [p.key, p.value]));
  const format = props.get('graft.format');
  if (format !== MODEL_FORMAT) {
    throw new GraftError(
      'BAD_REQUEST',
      format === undefined
        ? 'The model has no graft.format metadata: it was not exported by Graft.'
        : `The model has graft.format ${JSON.stringify(format)}; this version of Graft reads format ${MODEL_FORMAT}.`,
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
  const config = parseBackbone(backbone);
  const features = model.graph?.input?.find((input) => input.name === FEATURES_INPUT);
  // int64 fields decode as protobufjs Longs: read them through their decimal string.
  const dimValue = features?.type?.tensorType?.shape?.dim?.[1]?.dimValue;
  const width = dimValue === undefined || dimValue === null ? undefined : Number(String(dimValue));
  if (width !== config.dims) {
    throw new GraftError(
      'BAD_REQUEST',
      `The model's "${FEATURES_INPUT}" input must be [N, ${config.dims}] (the backbone's dims); it is ${width === undefined ? 'missing' : `[N, ${width}]`}.`,
    );
  }
  const temperature = Number(props.get('graft.temperature'));
  return {
    format,
    labels,
    backbone: config,
    temperature: Number.isFinite(temperature) ? temperature : undefined,
  };
}
