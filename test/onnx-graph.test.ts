import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cutAtTensor,
  DataType,
  dataInputs,
  featureTensorCandidates,
  float32Tensor,
  getGraph,
  graftModel,
  int64Tensor,
  loadModel,
  makeBatchDynamic,
  opsetVersion,
  pruneToOutputs,
  raiseOpset,
  readFloat32,
  readInt64,
  renameTensor,
  saveModel,
  setOutputs,
  shuffleWeights,
  toNumber,
  valueInfo,
} from '../src/engine/onnx-graph.js';
import { createRng } from '../src/engine/rng.js';
import { GraftError } from '../src/errors.js';
import { OnnxSession } from '../src/runtime/onnx.js';

const { onnx } = onnxProto;

// The fixture network: x [1, C, S, S] -> Conv(K filters 3x3, no padding) + bias -> Relu -> (Flatten | Reshape)
// -> MatMul W2 -> Add b2 = logits [1, CLASSES], with seeded weights.
const C = 2;
const S = 5;
const K = 3;
const OUT = S - 2;
const D = K * OUT * OUT;
const CLASSES = 4;

interface Weights {
  conv: Float32Array;
  convBias: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

function seededWeights(seed: number): Weights {
  const rng = createRng(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
  return { conv: fill(K * C * 9), convBias: fill(K), w2: fill(D * CLASSES), b2: fill(CLASSES) };
}

interface FixtureOptions {
  /** How the conv output becomes [1, D]: an ONNX Flatten, or a Reshape with a constant shape. */
  flattenWith?: 'flatten' | readonly number[];
  irVersion?: number;
  opset?: number;
  /** IR 3 style: every initializer is also listed as a graph input. */
  initializersAsInputs?: boolean;
  /** Also keep value_info entries with the fixed batch (as exporters write them). */
  withValueInfo?: boolean;
}

const FEATURES = 'flat';

function buildFixture(weights: Weights, options: FixtureOptions = {}): Uint8Array {
  const { flattenWith = 'flatten', irVersion = 7, opset = 13, initializersAsInputs = false } = options;
  const initializer = [
    float32Tensor('conv.w', [K, C, 3, 3], weights.conv),
    float32Tensor('conv.b', [K], weights.convBias),
    float32Tensor('fc.w', [D, CLASSES], weights.w2),
    float32Tensor('fc.b', [CLASSES], weights.b2),
  ];
  const flattenNode: onnxProto.onnx.INodeProto =
    flattenWith === 'flatten'
      ? { opType: 'Flatten', name: 'flatten', input: ['relu'], output: [FEATURES] }
      : { opType: 'Reshape', name: 'reshape', input: ['relu', 'flat.shape'], output: [FEATURES] };
  if (flattenWith !== 'flatten')
    initializer.push(int64Tensor('flat.shape', [flattenWith.length], flattenWith));
  const input = [valueInfo('x', [1, C, S, S])];
  if (initializersAsInputs) {
    for (const t of initializer)
      input.push(valueInfo(t.name ?? '', (t.dims ?? []).map(toNumber), t.dataType ?? 1));
  }
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'fixture',
    input,
    output: [valueInfo('logits', [1, CLASSES])],
    initializer,
    valueInfo: options.withValueInfo
      ? [valueInfo('relu', [1, K, OUT, OUT]), valueInfo(FEATURES, [1, D])]
      : [],
    node: [
      { opType: 'Conv', name: 'conv', input: ['x', 'conv.w', 'conv.b'], output: ['conv'] },
      { opType: 'Relu', name: 'relu', input: ['conv'], output: ['relu'] },
      flattenNode,
      { opType: 'MatMul', name: 'matmul', input: [FEATURES, 'fc.w'], output: ['mm'] },
      { opType: 'Add', name: 'add', input: ['mm', 'fc.b'], output: ['logits'] },
    ],
  };
  return saveModel(
    onnx.ModelProto.create({
      irVersion,
      opsetImport: [{ domain: '', version: opset }],
      producerName: 'test',
      graph,
    }),
  );
}

/** The fixture's features computed in TypeScript: conv (valid, stride 1) + bias, relu, flattened CHW. */
function referenceFeatures(weights: Weights, x: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n * D);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < OUT; i++) {
        for (let j = 0; j < OUT; j++) {
          let sum = weights.convBias[k] as number;
          for (let c = 0; c < C; c++) {
            for (let di = 0; di < 3; di++) {
              for (let dj = 0; dj < 3; dj++) {
                const w = weights.conv[((k * C + c) * 3 + di) * 3 + dj] as number;
                sum += w * (x[((b * C + c) * S + i + di) * S + j + dj] as number);
              }
            }
          }
          out[b * D + (k * OUT + i) * OUT + j] = Math.max(0, sum);
        }
      }
    }
  }
  return out;
}

function randomInput(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n * C * S * S }, () => rng.next() * 2 - 1);
}

const sessions: OnnxSession[] = [];
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.dispose()));
});

async function runFeatures(model: Uint8Array, x: Float32Array, n: number): Promise<Float32Array> {
  const session = await OnnxSession.create(model);
  sessions.push(session);
  const out = await session.run({ x: { type: 'float32', data: x, dims: [n, C, S, S] } }, ['features']);
  expect(out.features?.dims).toEqual([n, D]);
  return out.features?.data as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

describe('cutAtTensor', () => {
  const weights = seededWeights(7);

  it('gives exactly the hand-computed activations before the MatMul, at batch 1 and batch 5', async () => {
    // given
    const model = buildFixture(weights);
    // when
    const cut = await cutAtTensor(model, FEATURES);
    // then
    expect(cut.dims).toBe(D);
    expect(cut.shape).toEqual([D]);
    expect(cut.inputs).toEqual([{ name: 'x', shape: ['N', C, S, S] }]);
    const graph = getGraph(loadModel(cut.model));
    expect(graph.node.map((n) => n.opType)).toEqual(['Conv', 'Relu', 'Flatten', 'Flatten']);
    expect(graph.initializer.map((t) => t.name)).toEqual(['conv.w', 'conv.b']);
    expect(graph.output.map((o) => o.name)).toEqual(['features']);
    for (const n of [1, 5]) {
      const x = randomInput(n, 100 + n);
      const features = await runFeatures(cut.model, x, n);
      expect(maxAbsDiff(features, referenceFeatures(weights, x, n))).toBeLessThan(1e-5);
    }
  });

  it('leaves the original head reproducing the uncut logits (features @ W2 + b2)', async () => {
    // given: the uncut fixture only runs at batch 1, as published models often do
    const model = buildFixture(weights);
    const cut = await cutAtTensor(model, FEATURES);
    const x = randomInput(1, 3);
    const session = await OnnxSession.create(model);
    sessions.push(session);
    // when
    const logits = (await session.run({ x: { type: 'float32', data: x, dims: [1, C, S, S] } })).logits
      ?.data as Float32Array;
    const features = await runFeatures(cut.model, x, 1);
    // then
    const mine = Array.from({ length: CLASSES }, (_, k) => {
      let sum = weights.b2[k] as number;
      for (let d = 0; d < D; d++) sum += (features[d] as number) * (weights.w2[d * CLASSES + k] as number);
      return sum;
    });
    expect(maxAbsDiff(logits, mine)).toBeLessThan(1e-5);
  });

  it('fixes a Reshape whose constant shape hard-codes batch 1, with or without a -1', async () => {
    for (const shape of [
      [1, D],
      [1, -1],
    ]) {
      // given
      const model = buildFixture(weights, { flattenWith: shape, withValueInfo: true });
      // when
      const cut = await cutAtTensor(model, FEATURES);
      // then
      expect(cut.batch.fixedReshapes).toEqual(['reshape']);
      const x = randomInput(5, 11);
      expect(maxAbsDiff(await runFeatures(cut.model, x, 5), referenceFeatures(weights, x, 5))).toBeLessThan(
        1e-5,
      );
      // the shared original constant is gone, the new one copies or infers the batch
      const init = getGraph(loadModel(cut.model)).initializer;
      expect(init.map((t) => t.name)).toEqual(['conv.w', 'conv.b', 'flat.shape_dynamic_batch']);
      expect(readInt64(init[2] ?? {})).toEqual(shape[1] === -1 ? [0, -1] : [-1, D]);
    }
  });

  it('cuts an IR 3 / opset 8 model (initializers listed as inputs) and raises it to opset 17', async () => {
    // given
    const model = buildFixture(weights, { irVersion: 3, opset: 8, initializersAsInputs: true });
    // when
    const cut = await cutAtTensor(model, FEATURES, { opset: 17 });
    // then
    const decoded = loadModel(cut.model);
    expect(opsetVersion(decoded)).toBe(17);
    expect(toNumber(decoded.irVersion)).toBe(8);
    expect(getGraph(decoded).input.map((i) => i.name)).toEqual(['x']);
    const x = randomInput(3, 5);
    expect(maxAbsDiff(await runFeatures(cut.model, x, 3), referenceFeatures(weights, x, 3))).toBeLessThan(
      1e-5,
    );
  });

  it('names likely feature tensors when the cut tensor does not exist', async () => {
    // given
    const model = buildFixture(weights, { flattenWith: [1, D] });
    // when
    const error = await cutAtTensor(model, 'Pooling160_Output_0').catch((e: unknown) => e);
    // then
    expect(error).toBeInstanceOf(GraftError);
    expect((error as GraftError).code).toBe('BACKBONE_NOT_FOUND');
    expect((error as GraftError).message).toContain('"Pooling160_Output_0" does not exist');
    expect((error as GraftError).message).toContain(`"${FEATURES}"`);
    // the weight matrix fc.w is an input of the MatMul too, but it is no feature
    expect((error as GraftError).details?.candidates).toEqual([FEATURES]);
  });

  it('refuses to cut at a weight', async () => {
    const error = await cutAtTensor(buildFixture(weights), 'fc.w').catch((e: unknown) => e);
    expect((error as GraftError).code).toBe('BACKBONE_NOT_FOUND');
    expect((error as GraftError).message).toContain('is a weight');
  });

  it('cuts without flattening, under another output name, and at the input itself', async () => {
    const model = buildFixture(weights);
    const relu = await cutAtTensor(model, 'relu', { flatten: false, outputName: 'maps' });
    expect(relu.shape).toEqual([K, OUT, OUT]);
    expect(relu.dims).toBe(D);
    const pixels = await cutAtTensor(model, 'x');
    expect(pixels.dims).toBe(C * S * S);
    expect(getGraph(loadModel(pixels.model)).node.map((n) => n.opType)).toEqual(['Flatten']);
  });
});

describe('graph helpers', () => {
  const weights = seededWeights(9);

  it('pruneToOutputs keeps only what the outputs need', () => {
    const model = loadModel(buildFixture(weights));
    setOutputs(model, [valueInfo('relu')]);
    pruneToOutputs(model);
    expect(getGraph(model).node.map((n) => n.name)).toEqual(['conv', 'relu']);
    expect(getGraph(model).initializer.map((t) => t.name)).toEqual(['conv.w', 'conv.b']);
  });

  it('makeBatchDynamic frees dimension 0 of inputs and outputs and drops baked value_info', () => {
    const model = loadModel(buildFixture(weights, { withValueInfo: true }));
    makeBatchDynamic(model, { dimParam: 'batch' });
    const dim0 = (info: onnxProto.onnx.IValueInfoProto | undefined) =>
      info?.type?.tensorType?.shape?.dim?.[0];
    expect(dim0(dataInputs(model)[0])?.dimParam).toBe('batch');
    expect(dim0(getGraph(model).output[0])?.dimParam).toBe('batch');
    expect(getGraph(model).valueInfo).toEqual([]);
    // the change survives encoding (dim_value and dim_param are a oneof)
    const again = loadModel(saveModel(model));
    expect(dim0(getGraph(again).input[0])?.dimParam).toBe('batch');
    expect(toNumber(dim0(getGraph(again).input[0])?.dimValue)).toBe(0);
  });

  it('renameTensor renames everywhere and refuses a taken name', () => {
    const model = loadModel(buildFixture(weights));
    renameTensor(model, FEATURES, 'embedding');
    expect(getGraph(model).node[2]?.output).toEqual(['embedding']);
    expect(getGraph(model).node[3]?.input).toEqual(['embedding', 'fc.w']);
    expect(() => renameTensor(model, 'embedding', 'relu')).toThrow(/already has "relu"/);
  });

  it('raiseOpset refuses operators whose contract changed, and accepts the others', () => {
    const model = loadModel(buildFixture(weights, { opset: 8 }));
    getGraph(model).node.push({ opType: 'Softmax', name: 'softmax', input: ['logits'], output: ['p'] });
    expect(() => raiseOpset(model, 17)).toThrow(/Softmax/);
    const plain = loadModel(buildFixture(weights, { opset: 8 }));
    raiseOpset(plain, 17);
    expect(opsetVersion(plain)).toBe(17);
    expect(toNumber(plain.irVersion)).toBe(8);
  });

  it('featureTensorCandidates lists the data inputs of the last MatMul first', () => {
    expect(featureTensorCandidates(loadModel(buildFixture(weights)))).toEqual([FEATURES]);
  });

  it('shuffleWeights keeps shapes and values but moves them (seeded)', () => {
    const model = buildFixture(weights, { flattenWith: [1, D] });
    const shuffled = loadModel(shuffleWeights(model, 1));
    const again = loadModel(shuffleWeights(model, 1));
    const original = loadModel(model);
    for (const [i, tensor] of (getGraph(shuffled).initializer ?? []).entries()) {
      const before = getGraph(original).initializer[i];
      expect(tensor.dims).toEqual(before?.dims);
      if (tensor.dataType !== DataType.FLOAT || !before) continue;
      const values = readFloat32(tensor);
      expect([...values].sort()).toEqual([...readFloat32(before)].sort());
      expect(values).toEqual(readFloat32(getGraph(again).initializer[i] ?? {}));
      if (values.length > 4) expect(values).not.toEqual(readFloat32(before));
    }
  });

  it('graftModel joins a cut backbone and a head into one model that matches the hand computation', async () => {
    // given: the cut fixture, and a softmax head at opset 17 whose weight name clashes with the backbone's
    const cut = await cutAtTensor(
      buildFixture(weights, { irVersion: 3, opset: 8, initializersAsInputs: true }),
      FEATURES,
    );
    const head = saveModel(
      onnx.ModelProto.create({
        irVersion: 8,
        opsetImport: [{ domain: '', version: 17 }],
        metadataProps: [{ key: 'graft.labels', value: '["a","b","c","d"]' }],
        graph: {
          name: 'head',
          input: [valueInfo('features', ['N', D])],
          output: [valueInfo('probabilities', ['N', CLASSES])],
          initializer: [
            float32Tensor('conv.w', [D, CLASSES], weights.w2),
            float32Tensor('b', [CLASSES], weights.b2),
          ],
          node: [
            { opType: 'MatMul', name: 'conv', input: ['features', 'conv.w'], output: ['mm'] },
            { opType: 'Add', input: ['mm', 'b'], output: ['logits'] },
            {
              opType: 'Softmax',
              input: ['logits'],
              output: ['probabilities'],
              attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }],
            },
          ],
        },
      }),
    );
    // when
    const joined = graftModel(cut.model, head, { connect: { features: 'features' } });
    // then
    const model = loadModel(joined);
    expect(opsetVersion(model)).toBe(17);
    expect(getGraph(model).input.map((i) => i.name)).toEqual(['x']);
    expect(getGraph(model).output.map((o) => o.name)).toEqual(['probabilities']);
    expect(model.metadataProps.map((p) => p.key)).toEqual(['graft.labels']);
    const x = randomInput(4, 21);
    const session = await OnnxSession.create(joined);
    sessions.push(session);
    const out = (await session.run({ x: { type: 'float32', data: x, dims: [4, C, S, S] } })).probabilities;
    const features = referenceFeatures(weights, x, 4);
    const expected = Array.from({ length: 4 }, (_, n) => {
      const logits = Array.from({ length: CLASSES }, (_, k) => {
        let sum = weights.b2[k] as number;
        for (let d = 0; d < D; d++)
          sum += (features[n * D + d] as number) * (weights.w2[d * CLASSES + k] as number);
        return sum;
      });
      const max = Math.max(...logits);
      const exp = logits.map((l) => Math.exp(l - max));
      return exp.map((e) => e / exp.reduce((a, b) => a + b, 0));
    }).flat();
    expect(maxAbsDiff(out?.data as Float32Array, expected)).toBeLessThan(1e-6);
  });
});
