// Graph surgery on ONNX models with onnx-proto: the tools that turn a published network into a frozen
// feature extractor (expose a tensor, drop the old head, free the batch dimension, raise the opset).
import onnxProto from 'onnx-proto';
import { GraftError } from '../errors.js';
import { type ExecutionProvider, type InputTensor, OnnxSession } from '../runtime/onnx.js';
import { createRng, shuffleInPlace } from './rng.js';

const { onnx } = onnxProto;

/** A decoded ONNX model (onnx-proto / protobufjs message). */
export type ModelProto = onnxProto.onnx.ModelProto;
/** A graph as onnx-proto types it (every list optional); `getGraph` gives one with the lists present. */
export type GraphProto = onnxProto.onnx.IGraphProto;
/** One operator of a graph. */
export type NodeProto = onnxProto.onnx.INodeProto;
/** A weight (initializer) or constant value. */
export type TensorProto = onnxProto.onnx.ITensorProto;
/** A named, typed tensor: graph inputs, outputs and value_info entries. */
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** ONNX element types (`DataType.FLOAT`, `DataType.INT64`, ...). */
export const DataType = onnx.TensorProto.DataType;
/** ONNX attribute kinds (`AttributeType.INT`, ...). */
export const AttributeType = onnx.AttributeProto.AttributeType;

/** protobufjs decodes 64-bit integers as `Long` objects (or numbers when they fit): read either as a number. */
export function toNumber(value: number | { toNumber(): number } | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

/** Decodes ONNX model bytes; throws BAD_REQUEST when they are not an ONNX model with a graph. */
export function loadModel(bytes: Uint8Array): ModelProto {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new GraftError('BAD_REQUEST', 'The file is not a valid ONNX model (protobuf decoding failed).', {
      cause: err,
    });
  }
  if (!model.graph || (model.graph.node ?? []).length === 0) {
    throw new GraftError('BAD_REQUEST', 'The ONNX model has no graph (or a graph without nodes).');
  }
  return model;
}

/** Encodes a model back to bytes. */
export function saveModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** A graph whose lists are always present (empty when the file has none). */
export type Graph = GraphProto & {
  node: NodeProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  initializer: TensorProto[];
  valueInfo: ValueInfoProto[];
};

/** The model's graph with every list present; throws BAD_REQUEST when the model has no graph. */
export function getGraph(model: ModelProto): Graph {
  const graph = model.graph;
  if (!graph) throw new GraftError('BAD_REQUEST', 'The ONNX model has no graph.');
  graph.node ??= [];
  graph.input ??= [];
  graph.output ??= [];
  graph.initializer ??= [];
  graph.valueInfo ??= [];
  return graph as Graph;
}

function initializerNames(graph: GraphProto): Set<string> {
  return new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
}

/** Graph inputs the caller feeds: old (IR < 4) models also list every initializer as an input. */
export function dataInputs(model: ModelProto): ValueInfoProto[] {
  const graph = getGraph(model);
  const weights = initializerNames(graph);
  return graph.input.filter((input) => !weights.has(input.name ?? ''));
}

/** Every tensor name the graph holds, in graph order: data inputs, initializers, then node outputs. */
export function tensorNames(model: ModelProto): string[] {
  const graph = getGraph(model);
  const names = [
    ...dataInputs(model).map((i) => i.name ?? ''),
    ...graph.initializer.map((t) => t.name ?? ''),
    ...graph.node.flatMap((n) => n.output ?? []),
  ];
  return [...new Set(names.filter((n) => n !== ''))];
}

/** Where a tensor comes from: a data input, a weight, or the output of a node. */
export type TensorSource =
  | { kind: 'input'; input: ValueInfoProto }
  | { kind: 'initializer'; tensor: TensorProto }
  | { kind: 'node'; node: NodeProto };

/** Finds the source of a tensor by name; `undefined` when the graph has no such tensor. */
export function findTensor(model: ModelProto, name: string): TensorSource | undefined {
  const graph = getGraph(model);
  const tensor = graph.initializer.find((t) => t.name === name);
  if (tensor) return { kind: 'initializer', tensor };
  const input = graph.input.find((i) => i.name === name);
  if (input) return { kind: 'input', input };
  const node = graph.node.find((n) => (n.output ?? []).includes(name));
  return node ? { kind: 'node', node } : undefined;
}

/**
 * Tensors that are likely feature vectors, best first: the data (non-weight) inputs of the MatMul / Gemm nodes,
 * from the last one backwards, i.e. what a classifier head reads. Falls back to the last nodes' outputs.
 */
export function featureTensorCandidates(model: ModelProto, limit = 5): string[] {
  const graph = getGraph(model);
  // Weights and tensors computed from weights alone (a reshaped weight matrix) are not features.
  const carrying = batchCarrying(model);
  const found: string[] = [];
  for (const node of [...graph.node].reverse()) {
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    for (const input of node.input ?? []) {
      if (carrying.has(input) && !found.includes(input)) found.push(input);
    }
  }
  if (found.length === 0) {
    for (const node of [...graph.node].reverse()) found.push(...(node.output ?? []));
  }
  return found.slice(0, limit);
}

/** Tensor names a subgraph (If / Loop / Scan bodies) reads, including names from the enclosing scope. */
function subgraphReads(node: NodeProto): string[] {
  const reads: string[] = [];
  const visit = (graph: GraphProto): void => {
    for (const inner of graph.node ?? []) {
      reads.push(...(inner.input ?? []));
      for (const attr of inner.attribute ?? []) {
        if (attr.g) visit(attr.g);
        for (const g of attr.graphs ?? []) visit(g);
      }
    }
    for (const output of graph.output ?? []) if (output.name) reads.push(output.name);
  };
  for (const attr of node.attribute ?? []) {
    if (attr.g) visit(attr.g);
    for (const g of attr.graphs ?? []) visit(g);
  }
  return reads;
}

/**
 * Removes every node that no graph output needs, then the weights, data inputs and value_info entries that
 * nothing uses any more. Node order (a topological order) is kept.
 */
export function pruneToOutputs(model: ModelProto): void {
  const graph = getGraph(model);
  const needed = new Set(graph.output.map((o) => o.name ?? ''));
  const keep: boolean[] = new Array(graph.node.length).fill(false);
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const node = graph.node[i] as NodeProto;
    if (!(node.output ?? []).some((o) => needed.has(o))) continue;
    keep[i] = true;
    for (const input of [...(node.input ?? []), ...subgraphReads(node)]) if (input) needed.add(input);
  }
  graph.node = graph.node.filter((_, i) => keep[i]);
  graph.initializer = graph.initializer.filter((t) => needed.has(t.name ?? ''));
  graph.input = graph.input.filter((i) => needed.has(i.name ?? ''));
  graph.valueInfo = graph.valueInfo.filter((v) => needed.has(v.name ?? ''));
}

/** Makes a float (or other element type) value info with a shape of numbers and symbolic names. */
export function valueInfo(
  name: string,
  shape?: readonly (number | string)[],
  elemType: number = DataType.FLOAT,
): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        ...(shape
          ? { shape: { dim: shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } }
          : {}),
      },
    },
  };
}

/** A float32 initializer; `raw_data` is little-endian like every platform onnxruntime-node ships for. */
export function float32Tensor(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  const bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return { name, dataType: DataType.FLOAT, dims: [...dims], rawData: bytes };
}

/** An int64 initializer (shapes, axes). */
export function int64Tensor(name: string, dims: readonly number[], data: readonly number[]): TensorProto {
  const values = BigInt64Array.from(data, (v) => BigInt(v));
  return { name, dataType: DataType.INT64, dims: [...dims], rawData: new Uint8Array(values.buffer) };
}

// A decoded raw_data is a view into the whole model buffer, at any byte offset: copy before viewing it as
// wider numbers, which need an aligned offset.
function rawCopy(raw: Uint8Array): ArrayBuffer {
  return raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
}

/** The values of a FLOAT initializer (from `raw_data` or `float_data`). */
export function readFloat32(tensor: TensorProto): Float32Array {
  if (tensor.dataType !== DataType.FLOAT) {
    throw new GraftError(
      'BAD_REQUEST',
      `Tensor "${tensor.name}" is not float32 (data type ${tensor.dataType}).`,
    );
  }
  if (tensor.rawData && tensor.rawData.length > 0) return new Float32Array(rawCopy(tensor.rawData));
  return Float32Array.from(tensor.floatData ?? []);
}

/** The values of an INT64 initializer as numbers (shapes and axes fit easily). */
export function readInt64(tensor: TensorProto): number[] {
  if (tensor.dataType !== DataType.INT64) {
    throw new GraftError(
      'BAD_REQUEST',
      `Tensor "${tensor.name}" is not int64 (data type ${tensor.dataType}).`,
    );
  }
  if (tensor.rawData && tensor.rawData.length > 0) {
    return Array.from(new BigInt64Array(rawCopy(tensor.rawData)), (v) => Number(v));
  }
  return (tensor.int64Data ?? []).map((v) => toNumber(v));
}

/** A tensor name not yet used in the graph, built from `base`. */
export function uniqueName(model: ModelProto, base: string): string {
  const used = new Set(tensorNames(model));
  for (const node of getGraph(model).node) if (node.name) used.add(node.name);
  if (!used.has(base)) return base;
  for (let i = 1; ; i++) if (!used.has(`${base}_${i}`)) return `${base}_${i}`;
}

/**
 * Renames a tensor everywhere it appears: node inputs and outputs (subgraphs included), graph inputs and outputs,
 * initializers and value_info. Throws INVALID_OPTIONS when `to` is already taken.
 */
export function renameTensor(model: ModelProto, from: string, to: string): void {
  if (from === to) return;
  if (tensorNames(model).includes(to)) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Cannot rename "${from}" to "${to}": the graph already has "${to}".`,
    );
  }
  const swap = (name: string): string => (name === from ? to : name);
  const visit = (graph: GraphProto): void => {
    for (const node of graph.node ?? []) {
      node.input = (node.input ?? []).map(swap);
      node.output = (node.output ?? []).map(swap);
      for (const attr of node.attribute ?? []) {
        if (attr.g) visit(attr.g);
        for (const g of attr.graphs ?? []) visit(g);
      }
    }
    for (const list of [graph.input, graph.output, graph.valueInfo, graph.initializer]) {
      for (const item of list ?? []) if (item.name === from) item.name = to;
    }
  };
  visit(getGraph(model));
}

/** Replaces the graph's outputs (pair with `pruneToOutputs` to drop what they no longer need). */
export function setOutputs(model: ModelProto, outputs: readonly ValueInfoProto[]): void {
  getGraph(model).output = [...outputs];
}

/** The opset the model imports for a domain ('' is the default ONNX domain); 0 when it imports none. */
export function opsetVersion(model: ModelProto, domain = ''): number {
  const entry = (model.opsetImport ?? []).find((o) => (o.domain ?? '') === domain);
  return toNumber(entry?.version);
}

// Operators whose signature or meaning changed at the given opset (attributes became inputs, defaults moved,
// semantics changed): a node of one of these cannot simply be re-bound to a later opset.
const BREAKING_AT: Readonly<Record<string, readonly number[]>> = {
  Add: [7],
  Sub: [7],
  Mul: [7],
  Div: [7],
  Gemm: [7],
  BatchNormalization: [7, 9],
  Dropout: [7, 12],
  Upsample: [7, 9, 10],
  Slice: [10],
  TopK: [10],
  Pad: [11],
  Clip: [11],
  Resize: [11],
  Scatter: [11],
  Squeeze: [13],
  Unsqueeze: [13],
  Split: [13, 18],
  ReduceSum: [13],
  ReduceMean: [18],
  ReduceMax: [18],
  ReduceMin: [18],
  ReduceProd: [18],
  ReduceL1: [18],
  ReduceL2: [18],
  ReduceLogSum: [18],
  ReduceLogSumExp: [18],
  ReduceSumSquare: [18],
  Softmax: [13],
  LogSoftmax: [13],
  Hardmax: [13],
  Scan: [9],
};

// The lowest IR version that may declare a given default-domain opset (onnx/helper.py VERSION_TABLE).
function minIrVersion(opset: number): number {
  if (opset <= 8) return 3;
  if (opset === 9) return 4;
  if (opset === 10) return 5;
  if (opset === 11) return 6;
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}

/**
 * Raises the default-domain opset to `version` (nodes appended later bind to the model's opset, so a model being
 * extended with modern ops needs this). Operators whose contract changed in between make this throw
 * INVALID_OPTIONS, naming them. Raises the IR version to match; when it crosses IR 4, initializers stop being
 * listed as graph inputs (from IR 4 on, a listed initializer would become an overridable input).
 */
export function raiseOpset(model: ModelProto, version: number): void {
  const current = opsetVersion(model);
  if (current >= version) return;
  const graph = getGraph(model);
  const blocked = graph.node.filter((node) =>
    (BREAKING_AT[node.opType ?? ''] ?? []).some((at) => at > current && at <= version),
  );
  if (blocked.length > 0) {
    const ops = [...new Set(blocked.map((n) => n.opType))].join(', ');
    throw new GraftError(
      'INVALID_OPTIONS',
      `Cannot raise the model's opset from ${current} to ${version}: the contract of ${ops} changed in between. ` +
        `Convert the model with onnx.version_converter (Python) first.`,
    );
  }
  const others = (model.opsetImport ?? []).filter((o) => (o.domain ?? '') !== '');
  model.opsetImport = [{ domain: '', version }, ...others].map((o) => onnx.OperatorSetIdProto.create(o));
  const ir = toNumber(model.irVersion);
  const wanted = minIrVersion(version);
  if (ir < wanted) {
    if (ir < 4) {
      const weights = initializerNames(graph);
      graph.input = graph.input.filter((i) => !weights.has(i.name ?? ''));
    }
    model.irVersion = wanted;
  }
}

function dimsOf(info: ValueInfoProto): onnxProto.onnx.TensorShapeProto.IDimension[] | undefined {
  return info.type?.tensorType?.shape?.dim ?? undefined;
}

/** The constant values of a tensor produced by an initializer or a `Constant` node, when it is one. */
function constantInt64(model: ModelProto, name: string): number[] | undefined {
  const source = findTensor(model, name);
  if (source?.kind === 'initializer') {
    return source.tensor.dataType === DataType.INT64 ? readInt64(source.tensor) : undefined;
  }
  if (source?.kind === 'node' && source.node.opType === 'Constant') {
    const value = (source.node.attribute ?? []).find((a) => a.name === 'value')?.t;
    if (value?.dataType === DataType.INT64) return readInt64(value);
  }
  return undefined;
}

/** Tensors whose value depends on a data input (so carry the batch), in a graph in topological order. */
function batchCarrying(model: ModelProto): Set<string> {
  const carrying = new Set(dataInputs(model).map((i) => i.name ?? ''));
  for (const node of getGraph(model).node) {
    if ([...(node.input ?? []), ...subgraphReads(node)].some((i) => carrying.has(i))) {
      for (const output of node.output ?? []) carrying.add(output);
    }
  }
  return carrying;
}

/** What `makeBatchDynamic` changed, for logs and tests. */
export interface BatchDynamicReport {
  /** Reshape nodes whose constant shape hard-coded the old batch size, now fixed. */
  fixedReshapes: string[];
  /** Reshape nodes that hard-code the batch and could not be fixed (the model then only runs at that batch). */
  unfixedReshapes: string[];
}

/**
 * Makes dimension 0 of every data input and every output symbolic (`dimParam`), drops value_info shapes that
 * baked the old batch size in, and fixes each Reshape whose constant shape starts with the old batch size while
 * its data carries the batch: to -1 when the shape has no other -1, else to 0 ("copy the input's dimension 0").
 * Other ops that bake a batch size into constants (Expand, Tile, ConstantOfShape) are not rewritten: run the
 * model at two batch sizes to be sure (`cutAtTensor` does).
 */
export function makeBatchDynamic(model: ModelProto, { dimParam = 'N' } = {}): BatchDynamicReport {
  const graph = getGraph(model);
  const report: BatchDynamicReport = { fixedReshapes: [], unfixedReshapes: [] };
  const oldBatches = new Set<number>();
  for (const info of [...dataInputs(model), ...graph.output]) {
    const first = dimsOf(info)?.[0];
    if (!first) continue;
    if (first.dimValue !== undefined && first.dimValue !== null && toNumber(first.dimValue) > 0) {
      if (graph.input.includes(info)) oldBatches.add(toNumber(first.dimValue));
    }
    // dim_value and dim_param are a oneof: protobufjs writes whichever is non-null.
    first.dimValue = null;
    first.dimParam = dimParam;
  }
  const weights = initializerNames(graph);
  // Shapes of activations in value_info are hints that would now contradict the dynamic batch.
  graph.valueInfo = graph.valueInfo.filter((v) => weights.has(v.name ?? ''));
  if (oldBatches.size === 0) return report;
  const carrying = batchCarrying(model);
  for (const node of graph.node) {
    if (node.opType !== 'Reshape') continue;
    const [data, shapeName] = node.input ?? [];
    if (!data || !shapeName || !carrying.has(data)) continue;
    const shape = constantInt64(model, shapeName);
    const first = shape?.[0];
    if (!shape || first === undefined || !oldBatches.has(first)) continue;
    const allowZero = toNumber((node.attribute ?? []).find((a) => a.name === 'allowzero')?.i) === 1;
    const hasMinusOne = shape.slice(1).includes(-1);
    const label = node.name || (node.output ?? [])[0] || 'Reshape';
    if (hasMinusOne && allowZero) {
      report.unfixedReshapes.push(label);
      continue;
    }
    const fixed = [hasMinusOne ? 0 : -1, ...shape.slice(1)];
    // The shape constant may be shared with a weight reshape: give this node a constant of its own.
    const name = uniqueName(model, `${shapeName}_dynamic_batch`);
    graph.initializer.push(int64Tensor(name, [fixed.length], fixed));
    (node.input as string[])[1] = name;
    report.fixedReshapes.push(label);
  }
  dropUnusedInitializers(model);
  return report;
}

/** Removes initializers (and their IR < 4 input entries) that no node reads and no output names. */
function dropUnusedInitializers(model: ModelProto): void {
  const graph = getGraph(model);
  const used = new Set([
    ...graph.node.flatMap((n) => [...(n.input ?? []), ...subgraphReads(n)]),
    ...graph.output.map((o) => o.name ?? ''),
  ]);
  const unused = new Set(graph.initializer.map((t) => t.name ?? '').filter((n) => !used.has(n)));
  graph.initializer = graph.initializer.filter((t) => !unused.has(t.name ?? ''));
  graph.input = graph.input.filter((i) => !unused.has(i.name ?? ''));
  graph.valueInfo = graph.valueInfo.filter((v) => !unused.has(v.name ?? ''));
}

/** Fills the zero tensors `inferOutputShape` feeds: per data input, the shape of one example (no batch). */
function exampleShapes(
  model: ModelProto,
  given: Readonly<Record<string, readonly number[]>>,
): Map<string, { type: 'float32' | 'int64'; shape: number[] }> {
  const shapes = new Map<string, { type: 'float32' | 'int64'; shape: number[] }>();
  for (const input of dataInputs(model)) {
    const name = input.name ?? '';
    const elem = input.type?.tensorType?.elemType;
    const type = elem === DataType.INT64 ? 'int64' : elem === DataType.FLOAT ? 'float32' : undefined;
    if (!type) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `Input "${name}" has element type ${elem}; only float32 and int64 inputs can be probed.`,
      );
    }
    const known = given[name];
    if (known) {
      shapes.set(name, { type, shape: [...known] });
      continue;
    }
    const dims = (dimsOf(input) ?? []).slice(1);
    const shape = dims.map((d) => toNumber(d.dimValue));
    if (dims.length === 0 || shape.some((d) => d <= 0)) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `Input "${name}" has no fixed shape past the batch dimension; pass inputShapes["${name}"] (one example's shape).`,
      );
    }
    shapes.set(name, { type, shape });
  }
  return shapes;
}

export interface InferShapeOptions {
  /** One example's shape (without the batch dimension) for inputs whose model shape is symbolic. */
  inputShapes?: Readonly<Record<string, readonly number[]>>;
  /** Batch size of the probe run. @default 2 */
  batch?: number;
  /** @default ['cpu'] */
  executionProviders?: readonly ExecutionProvider[];
}

/**
 * Runs the model once through ONNX Runtime on zero inputs and returns the shape of one example of each output
 * (the batch dimension removed). Throws INVALID_OPTIONS with ONNX Runtime's message when the model does not run.
 */
export async function inferOutputShapes(
  modelBytes: Uint8Array,
  options: InferShapeOptions = {},
): Promise<Record<string, number[]>> {
  const { inputShapes = {}, batch = 2, executionProviders = ['cpu'] } = options;
  const model = loadModel(modelBytes);
  const feeds: Record<string, InputTensor> = {};
  for (const [name, { type, shape }] of exampleShapes(model, inputShapes)) {
    const dims = [batch, ...shape];
    const size = dims.reduce((a, b) => a * b, 1);
    feeds[name] =
      type === 'float32'
        ? { type, data: new Float32Array(size), dims }
        : { type, data: new BigInt64Array(size), dims };
  }
  let session: OnnxSession | undefined;
  try {
    session = await OnnxSession.create(modelBytes, { executionProviders });
    const outputs = await session.run(feeds);
    const shapes: Record<string, number[]> = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      if (tensor.dims[0] !== batch) {
        throw new Error(`output "${name}" has batch ${tensor.dims[0]} for an input batch of ${batch}`);
      }
      shapes[name] = tensor.dims.slice(1);
    }
    return shapes;
  } catch (err) {
    if (err instanceof GraftError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new GraftError(
      'INVALID_OPTIONS',
      `The edited model does not run at batch size ${batch} in ONNX Runtime: ${message}`,
      { cause: err },
    );
  } finally {
    await session?.dispose();
  }
}

export interface CutOptions extends InferShapeOptions {
  /** Add a Flatten(axis=1) so the output is [N, d]. @default true */
  flatten?: boolean;
  /** Name of the single output of the cut model. @default 'features' */
  outputName?: string;
  /** Raise the default-domain opset to at least this (see `raiseOpset`); unchanged when absent. */
  opset?: number;
  /** Symbolic name of the batch dimension. @default 'N' */
  dimParam?: string;
}

/** A model cut at a feature tensor. */
export interface CutModel {
  /** The cut model's bytes: data inputs as before (batch dynamic), one output `outputName`. */
  model: Uint8Array;
  outputName: string;
  /** Product of the output's dimensions past the batch: the feature width. */
  dims: number;
  /** One example's output shape ([dims] when flattened). */
  shape: number[];
  /** The data inputs the cut model reads, with their declared shapes (the batch as `dimParam`). */
  inputs: { name: string; shape: (number | string)[] }[];
  batch: BatchDynamicReport;
}

/**
 * Turns a network into a feature extractor: exposes `tensorName` as the only output (Flatten to [N, d] when
 * `flatten`), drops every node the output does not need (the old head), makes the batch dimension dynamic, then
 * runs the result once through ONNX Runtime (batch 2, zero inputs) to learn the feature width and to prove the
 * batch really is free. An unknown tensor throws BACKBONE_NOT_FOUND naming likely feature tensors.
 */
export async function cutAtTensor(
  modelBytes: Uint8Array,
  tensorName: string,
  options: CutOptions = {},
): Promise<CutModel> {
  const { flatten = true, outputName = 'features', opset, dimParam = 'N', ...inferOptions } = options;
  const model = loadModel(modelBytes);
  const source = findTensor(model, tensorName);
  if (!source || source.kind === 'initializer') {
    const candidates = featureTensorCandidates(model);
    const why = source ? 'is a weight (initializer), not an activation' : 'does not exist in the model';
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `The cut tensor "${tensorName}" ${why}. Likely feature tensors (inputs of the last MatMul/Gemm): ${candidates
        .map((c) => JSON.stringify(c))
        .join(', ')}.`,
      { details: { cutAt: tensorName, candidates } },
    );
  }
  let cut = tensorName;
  const needsNode = flatten || tensorName !== outputName;
  const taken = findTensor(model, outputName);
  if (needsNode && taken) {
    // Free the output name: an internal tensor that happens to be called `features` gets another name.
    if (taken.kind === 'input') {
      throw new GraftError(
        'INVALID_OPTIONS',
        `The model has a data input called "${outputName}": choose another output name.`,
      );
    }
    const renamed = uniqueName(model, `${outputName}_orig`);
    renameTensor(model, outputName, renamed);
    if (cut === outputName) cut = renamed;
  }
  const graph = getGraph(model);
  const elemType =
    graph.valueInfo.find((v) => v.name === cut)?.type?.tensorType?.elemType ??
    graph.input.find((v) => v.name === cut)?.type?.tensorType?.elemType ??
    DataType.FLOAT;
  if (flatten) {
    graph.node.push({
      opType: 'Flatten',
      name: uniqueName(model, `${outputName}_flatten`),
      input: [cut],
      output: [outputName],
      attribute: [{ name: 'axis', type: AttributeType.INT, i: 1 }],
    });
  } else if (needsNode) {
    graph.node.push({
      opType: 'Identity',
      name: uniqueName(model, `${outputName}_identity`),
      input: [cut],
      output: [outputName],
    });
  }
  setOutputs(model, [valueInfo(outputName, undefined, elemType)]);
  pruneToOutputs(model);
  const batch = makeBatchDynamic(model, { dimParam });
  if (opset !== undefined) raiseOpset(model, opset);
  const shapes = await inferOutputShapes(saveModel(model), inferOptions);
  const shape = shapes[outputName] ?? [];
  setOutputs(model, [valueInfo(outputName, [dimParam, ...shape], elemType)]);
  return {
    model: saveModel(model),
    outputName,
    dims: shape.reduce((a, b) => a * b, 1),
    shape,
    inputs: dataInputs(model).map((input) => ({
      name: input.name ?? '',
      shape: (dimsOf(input) ?? []).map((d) => (d.dimParam ? d.dimParam : toNumber(d.dimValue))),
    })),
    batch,
  };
}

/**
 * The control for "are the pretrained weights really used?": permutes the values inside every float weight
 * tensor (seeded), so shapes and per-layer value distributions stay and the learned structure is gone.
 * Integer initializers (shapes, axes) are left alone.
 */
export function shuffleWeights(modelBytes: Uint8Array, seed: number): Uint8Array {
  const model = loadModel(modelBytes);
  const rng = createRng(seed);
  for (const tensor of getGraph(model).initializer) {
    if (tensor.dataType !== DataType.FLOAT) continue;
    const values = shuffleInPlace(readFloat32(tensor), rng);
    tensor.floatData = [];
    tensor.rawData = new Uint8Array(values.buffer);
  }
  return saveModel(model);
}

export interface GraftModelOptions {
  /** For each input of `addition`, the tensor of `base` that feeds it, e.g. `{ features: 'features' }`. */
  connect: Readonly<Record<string, string>>;
  /** Keep `base`'s outputs beside `addition`'s. @default false */
  keepBaseOutputs?: boolean;
}

/**
 * Joins two models into one: `addition` (a head) reads tensors of `base` (a cut backbone) through `connect`.
 * Both are raised to the higher opset of the two (`raiseOpset`), tensors and nodes of `addition` whose names
 * clash with `base`'s are renamed, the outputs are `addition`'s (plus `base`'s with `keepBaseOutputs`), and
 * `metadata_props` are merged (`addition`'s win). Unconnected inputs of `addition` stay inputs of the result.
 */
export function graftModel(base: Uint8Array, addition: Uint8Array, options: GraftModelOptions): Uint8Array {
  const { connect, keepBaseOutputs = false } = options;
  const lower = loadModel(base);
  const upper = loadModel(addition);
  const opset = Math.max(opsetVersion(lower), opsetVersion(upper));
  raiseOpset(lower, opset);
  raiseOpset(upper, opset);
  // From IR 4 on, an initializer listed as an input is an overridable input: an IR 3 part must stop listing them.
  const ir = Math.max(toNumber(lower.irVersion), toNumber(upper.irVersion));
  for (const part of [lower, upper]) {
    if (ir >= 4 && toNumber(part.irVersion) < 4) {
      const weights = initializerNames(getGraph(part));
      getGraph(part).input = getGraph(part).input.filter((i) => !weights.has(i.name ?? ''));
    }
  }
  const lowerGraph = getGraph(lower);
  const upperGraph = getGraph(upper);
  const baseNames = new Set(tensorNames(lower));
  for (const [input, from] of Object.entries(connect)) {
    if (!dataInputs(upper).some((i) => i.name === input)) {
      throw new GraftError('INVALID_OPTIONS', `graftModel: the added model has no input "${input}".`);
    }
    if (!baseNames.has(from)) {
      throw new GraftError('INVALID_OPTIONS', `graftModel: the base model has no tensor "${from}".`);
    }
  }
  // Free every clashing name in the added model, then point its connected inputs at the base's tensors.
  const taken = new Set([...baseNames, ...tensorNames(upper)]);
  for (const name of tensorNames(upper)) {
    if (!baseNames.has(name) || connect[name] !== undefined) continue;
    let fresh = `${name}_1`;
    for (let i = 2; taken.has(fresh); i++) fresh = `${name}_${i}`;
    taken.add(fresh);
    renameTensor(upper, name, fresh);
  }
  for (const [input, from] of Object.entries(connect)) {
    upperGraph.input = upperGraph.input.filter((i) => i.name !== input);
    if (input !== from) {
      // `from` may already name a tensor of the added model only if it is this very input: rename in place.
      const swap = (name: string): string => (name === input ? from : name);
      for (const node of upperGraph.node) node.input = (node.input ?? []).map(swap);
      for (const output of upperGraph.output) if (output.name === input) output.name = from;
    }
  }
  const nodeNames = new Set(lowerGraph.node.map((n) => n.name).filter(Boolean));
  for (const node of upperGraph.node) {
    if (node.name && nodeNames.has(node.name)) node.name = `${node.name}_added`;
  }
  lowerGraph.node.push(...upperGraph.node);
  lowerGraph.initializer.push(...upperGraph.initializer);
  lowerGraph.input.push(...upperGraph.input);
  lowerGraph.valueInfo.push(...upperGraph.valueInfo);
  lowerGraph.output = [...(keepBaseOutputs ? lowerGraph.output : []), ...upperGraph.output];
  const props = new Map<string, string>();
  for (const p of [...(lower.metadataProps ?? []), ...(upper.metadataProps ?? [])])
    props.set(p.key ?? '', p.value ?? '');
  lower.metadataProps = [...props].map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }));
  lower.irVersion = ir;
  const customDomains = new Map<string, number>();
  for (const o of [...(lower.opsetImport ?? []), ...(upper.opsetImport ?? [])]) {
    const domain = o.domain ?? '';
    if (domain !== '')
      customDomains.set(domain, Math.max(customDomains.get(domain) ?? 0, toNumber(o.version)));
  }
  lower.opsetImport = [
    { domain: '', version: opset },
    ...[...customDomains].map(([domain, version]) => ({ domain, version })),
  ].map((o) => onnx.OperatorSetIdProto.create(o));
  if (upper.producerName) lower.producerName = upper.producerName;
  if (upper.producerVersion) lower.producerVersion = upper.producerVersion;
  pruneToOutputs(lower);
  return saveModel(lower);
}
