import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createImagePreparer,
  type DecodedImage,
  decodeImage,
  type ImageBackbone,
  type ImageInputSpec,
  imageBackboneSchema,
  loadImageBackbone,
  parseImageBackboneConfig,
  resizeBilinear,
} from '../src/engine/backbones/image.js';
import { loadFashionMnist } from '../src/engine/fashion-mnist.js';
import { getGraph, loadModel, readFloat32, shuffleWeights } from '../src/engine/onnx-graph.js';
import { GraftError } from '../src/errors.js';
import { OnnxSession } from '../src/runtime/onnx.js';
import { SHARED_DIR as shared } from './support/fixtures.js';
import { tinyCnn } from './support/tiny-cnn.js';

const hasShared = existsSync(shared);

const sessions: OnnxSession[] = [];
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.dispose()));
});

async function session(model: Uint8Array): Promise<OnnxSession> {
  const created = await OnnxSession.create(model);
  sessions.push(created);
  return created;
}

function thrown(fn: () => unknown): GraftError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GraftError);
    return err as GraftError;
  }
  throw new Error('expected a GraftError');
}

/** An RGB image whose pixel (x, y) is (x * 16, y * 16, 255 - x * 8), a smooth pattern JPEG keeps well. */
function gradient(width: number, height: number, channels: 3 | 4): DecodedImage {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * channels;
      data.set([x * 16, y * 16, 255 - x * 8, 255].slice(0, channels), o);
    }
  }
  return { width, height, channels, data };
}

const greySpec = (overrides: Partial<ImageInputSpec> = {}): ImageInputSpec => ({
  name: 'img',
  width: 2,
  height: 2,
  channels: 1,
  scale: 1 / 255,
  mean: [0],
  std: [1],
  ...overrides,
});

describe('decoding', () => {
  it('decodes a PNG to the exact pixels it was encoded from', () => {
    // given
    const png = new PNG({ width: 3, height: 2 });
    const pixels = [
      255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 10, 20, 30, 255, 40, 50, 60, 128, 0, 0, 0, 0,
    ];
    png.data = Buffer.from(pixels);
    const bytes = new Uint8Array(PNG.sync.write(png));
    // when
    const image = decodeImage(bytes);
    // then
    expect(image).toMatchObject({ width: 3, height: 2, channels: 4 });
    expect([...image.data]).toEqual(pixels);
  });

  it('decodes a JPEG to its pixels within the loss of the encoding', () => {
    // given
    const source = gradient(16, 16, 4);
    const bytes = new Uint8Array(jpeg.encode({ width: 16, height: 16, data: source.data }, 95).data);
    // when
    const image = decodeImage(bytes);
    // then
    expect(image).toMatchObject({ width: 16, height: 16, channels: 3 });
    let worst = 0;
    let total = 0;
    for (let p = 0; p < 256; p++) {
      for (let c = 0; c < 3; c++) {
        const diff = Math.abs((image.data[p * 3 + c] as number) - (source.data[p * 4 + c] as number));
        worst = Math.max(worst, diff);
        total += diff;
      }
    }
    expect(worst).toBeLessThanOrEqual(12);
    expect(total / (256 * 3)).toBeLessThan(2);
  });

  it('rejects bytes that are neither PNG nor JPEG, naming the image', () => {
    const prepare = createImagePreparer(greySpec());
    const error = thrown(() =>
      prepare([{ width: 2, height: 2, channels: 1, data: new Uint8Array(4) }, new Uint8Array([1, 2, 3])]),
    );
    expect(error.code).toBe('INVALID_DATASET');
    expect(error.message).toBe('Image 1: not a PNG or JPEG image.');
    expect(error.details).toEqual({ index: 1 });
  });

  it('rejects a PNG that declares a huge size before inflating it', () => {
    // given: the signature and an IHDR chunk of 100000 x 100000 pixels, nothing else
    const header = Buffer.alloc(33);
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(header, 0);
    header.writeUInt32BE(13, 8);
    header.write('IHDR', 12, 'ascii');
    header.writeUInt32BE(100_000, 16);
    header.writeUInt32BE(100_000, 20);
    // when / then
    const error = thrown(() => decodeImage(new Uint8Array(header)));
    expect(error.code).toBe('INVALID_DATASET');
    expect(error.message).toContain('100000x100000');
  });

  it('rejects a corrupt PNG and decoded data of the wrong length', () => {
    const png = new Uint8Array(PNG.sync.write(Object.assign(new PNG({ width: 2, height: 2 }), {})));
    expect(thrown(() => decodeImage(png.slice(0, 40))).message).toMatch(/corrupt PNG/);
    const prepare = createImagePreparer(greySpec());
    const error = thrown(() => prepare([{ width: 2, height: 2, channels: 3, data: new Uint8Array(4) }]));
    expect(error.message).toBe('Image 0: image data holds 4 bytes; 2x2x3 needs 12.');
  });
});

describe('prepare: channels, resizing, normalisation', () => {
  it('resizes bilinearly with half-pixel centres (hand-computed 2x2 -> 4x4)', () => {
    const out = resizeBilinear(
      Float32Array.of(0, 100, 200, 300),
      1,
      { width: 2, height: 2 },
      { width: 4, height: 4 },
    );
    expect([...out]).toEqual([0, 25, 75, 100, 50, 75, 125, 150, 150, 175, 225, 250, 200, 225, 275, 300]);
  });

  it('halving a size averages 2x2 blocks, and an unchanged size is the identity', () => {
    const planes = Float32Array.from({ length: 16 }, (_, i) => i * i);
    const half = resizeBilinear(planes, 1, { width: 4, height: 4 }, { width: 2, height: 2 });
    const block = (x: number, y: number) =>
      [0, 1, 4, 5].reduce(
        (s, d) => s + (planes[y * 8 + x * 2 + (d % 4) + Math.floor(d / 4) * 4] as number),
        0,
      ) / 4;
    expect([...half]).toEqual([block(0, 0), block(1, 0), block(0, 1), block(1, 1)]);
    expect(resizeBilinear(planes, 1, { width: 4, height: 4 }, { width: 4, height: 4 })).toBe(planes);
  });

  it('normalises RGB per channel into NCHW exactly as computed by hand', () => {
    // given
    const spec: ImageInputSpec = {
      name: 'pixels',
      width: 2,
      height: 1,
      channels: 3,
      scale: 1 / 255,
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
    };
    const image: DecodedImage = {
      width: 2,
      height: 1,
      channels: 3,
      data: Uint8Array.of(10, 20, 30, 200, 100, 0),
    };
    // when
    const tensor = createImagePreparer(spec)([image, image]).pixels;
    // then
    expect(tensor?.dims).toEqual([2, 3, 1, 2]);
    const byHand = (v: number, c: number) => (v / 255 - (spec.mean[c] as number)) / (spec.std[c] as number);
    const one = [byHand(10, 0), byHand(200, 0), byHand(20, 1), byHand(100, 1), byHand(30, 2), byHand(0, 2)];
    expect(tensor?.data.length).toBe(12);
    [...one, ...one].forEach((v, i) => {
      expect(tensor?.data[i]).toBeCloseTo(v, 5);
    });
  });

  it('turns RGB into grey by luma, inverts, and grows grey into RGB', () => {
    const rgb: DecodedImage = { width: 1, height: 1, channels: 4, data: Uint8Array.of(200, 100, 50, 7) };
    const luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50;
    const grey = createImagePreparer(greySpec({ width: 1, height: 1, invert: true, scale: 1, std: [2] }))([
      rgb,
    ]);
    expect(grey.img?.data[0]).toBeCloseTo((255 - luma) / 2, 4);
    const fromGrey = createImagePreparer(greySpec({ width: 1, height: 1, channels: 3, scale: 1 }))([
      { width: 1, height: 1, channels: 1, data: Uint8Array.of(42) },
    ]);
    expect([...(fromGrey.img?.data ?? [])]).toEqual([42, 42, 42]);
  });

  it('resizes a wrong size by default and rejects it with strictSize, saying the size expected', () => {
    const image: DecodedImage = { width: 4, height: 4, channels: 1, data: new Uint8Array(16).fill(51) };
    const resized = createImagePreparer(greySpec())([image]).img?.data as Float32Array;
    expect([...resized].map((v) => Number(v.toFixed(6)))).toEqual([0.2, 0.2, 0.2, 0.2]);
    const error = thrown(() => createImagePreparer(greySpec({ strictSize: true }))([image]));
    expect(error.code).toBe('INVALID_DATASET');
    expect(error.message).toBe('Image 0: image is 4x4; this backbone expects 2x2 (width x height).');
  });

  it('validates the configuration with a message per field', () => {
    const error = thrown(() =>
      parseImageBackboneConfig({
        kind: 'image',
        name: 'Bad Name',
        dims: 8,
        cutAt: 'x',
        input: { ...greySpec({ channels: 3 }), mean: [0, 0] },
        sha256: 'abc',
      }),
    );
    expect(error.code).toBe('INVALID_OPTIONS');
    expect(error.message).toContain('name:');
    expect(error.message).toContain('input: mean and std need one value, or one per channel');
    expect(error.message).toContain('sha256:');
  });
});

const rgbSpec: ImageInputSpec = {
  name: 'img',
  width: 4,
  height: 4,
  channels: 3,
  scale: 1 / 255,
  mean: [0.5],
  std: [0.25],
};

async function features(backbone: ImageBackbone, images: DecodedImage[]) {
  const out = await (await session(backbone.graph)).run(backbone.prepare(images), ['features']);
  return out.features as { data: Float32Array; dims: readonly number[] };
}

describe('loadImageBackbone on a generated CNN', () => {
  const { bytes, conv } = tinyCnn(3);
  const images = [gradient(4, 4, 3), gradient(8, 6, 4)];

  it('cuts at the named tensor: features are the hand-computed 1x1 conv + relu of the prepared pixels', async () => {
    // when
    const backbone = await loadImageBackbone(bytes, { name: 'tiny', cutAt: 'flat', input: rgbSpec });
    // then
    expect(backbone.dims).toBe(32);
    expect(imageBackboneSchema.parse(backbone.config)).toEqual(backbone.config);
    expect(backbone.config.sha256).toMatch(/^[0-9a-f]{64}$/);
    const pixels = backbone.prepare(images).img?.data as Float32Array;
    const out = await features(backbone, images);
    expect(out.dims).toEqual([2, 32]);
    for (let n = 0; n < 2; n++) {
      for (let k = 0; k < 2; k++) {
        for (let p = 0; p < 16; p++) {
          let sum = 0;
          for (let c = 0; c < 3; c++)
            sum += (conv[k * 3 + c] as number) * (pixels[n * 48 + c * 16 + p] as number);
          expect(out.data[n * 32 + k * 16 + p]).toBeCloseTo(Math.max(0, sum), 5);
        }
      }
    }
  });

  it('with includeRawInput, appends the prepared pixels to the features inside the graph', async () => {
    const plain = await loadImageBackbone(bytes, { name: 'tiny', cutAt: 'flat', input: rgbSpec });
    const both = await loadImageBackbone(bytes, {
      name: 'tiny',
      cutAt: 'flat',
      input: rgbSpec,
      includeRawInput: true,
    });
    expect(both.dims).toBe(32 + 48);
    expect(both.config.includeRawInput).toBe(true);
    const a = await features(plain, images);
    const b = await features(both, images);
    const pixels = both.prepare(images).img?.data as Float32Array;
    for (let n = 0; n < 2; n++) {
      expect([...b.data.slice(n * 80, n * 80 + 32)]).toEqual([...a.data.slice(n * 32, n * 32 + 32)]);
      expect([...b.data.slice(n * 80 + 32, n * 80 + 80)]).toEqual([...pixels.slice(n * 48, n * 48 + 48)]);
    }
  });

  it('raises the graph to opset 17 with a dynamic batch and one input, so a head can be appended', async () => {
    const backbone = await loadImageBackbone(bytes, { name: 'tiny', cutAt: 'flat', input: rgbSpec });
    const model = loadModel(backbone.graph);
    expect(model.opsetImport.map((o) => Number(o.version))).toEqual([17]);
    expect(getGraph(model).input.map((i) => i.name)).toEqual(['img']);
    expect(
      getGraph(model).output[0]?.type?.tensorType?.shape?.dim?.map((d) => d.dimParam || Number(d.dimValue)),
    ).toEqual(['N', 32]);
  });

  it('fails with a code that says what to fix', async () => {
    const load = (options: Partial<Parameters<typeof loadImageBackbone>[1]>) =>
      loadImageBackbone(bytes, { name: 'tiny', cutAt: 'flat', input: rgbSpec, ...options }).catch(
        (e: GraftError) => e,
      );
    const missing = (await load({ cutAt: 'pool5' })) as GraftError;
    expect(missing.code).toBe('BACKBONE_NOT_FOUND');
    expect(missing.message).toContain('"flat"');
    expect(((await load({ input: { ...rgbSpec, name: 'data' } })) as GraftError).message).toContain(
      'the model has no input "data"; its inputs are "img"',
    );
    expect(((await load({ input: { ...rgbSpec, channels: 1 } })) as GraftError).message).toContain(
      'input "img" is [1, 3, 4, 4]; the spec says [N, 1, 4, 4]',
    );
    expect(((await load({ dims: 64 })) as GraftError).code).toBe('INVALID_OPTIONS');
    expect(((await load({ sha256: '0'.repeat(64) })) as GraftError).message).toContain('SHA-256');
  });
});

// ---- The real pretrained example: mnist-8 on Fashion-MNIST (needs ../shared). ----

const MNIST_CUT = 'Pooling160_Output_0_reshape0';
const mnistInput: ImageInputSpec = {
  name: 'Input3',
  width: 28,
  height: 28,
  channels: 1,
  scale: 1 / 255,
  mean: [0],
  std: [1],
};

/** Ridge regression on one-hot targets over standardised features (closed form, Cholesky). */
function ridgeProbe(trainX: Float32Array[], trainY: number[], lambda: number, classes: number) {
  const d = (trainX[0] as Float32Array).length;
  const mean = new Float64Array(d);
  const sd = new Float64Array(d);
  for (const x of trainX)
    for (let j = 0; j < d; j++) mean[j] = (mean[j] as number) + (x[j] as number) / trainX.length;
  for (const x of trainX) {
    for (let j = 0; j < d; j++)
      sd[j] = (sd[j] as number) + ((x[j] as number) - (mean[j] as number)) ** 2 / trainX.length;
  }
  const z = (x: Float32Array) =>
    Float64Array.from(x, (v, j) => (v - (mean[j] as number)) / (Math.sqrt(sd[j] as number) || 1));
  const xs = trainX.map(z);
  const a = new Float64Array(d * d);
  const b = new Float64Array(d * classes);
  xs.forEach((x, n) => {
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++)
        a[i * d + j] = (a[i * d + j] as number) + (x[i] as number) * (x[j] as number);
      const k = (trainY[n] as number) + i * classes;
      b[k] = (b[k] as number) + (x[i] as number);
    }
  });
  for (let i = 0; i < d; i++) a[i * d + i] = (a[i * d + i] as number) + lambda;
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * d + j] as number;
      for (let k = 0; k < j; k++) s -= (l[i * d + k] as number) * (l[j * d + k] as number);
      l[i * d + j] = i === j ? Math.sqrt(s) : s / (l[j * d + j] as number);
    }
  }
  const w = new Float64Array(d * classes);
  for (let c = 0; c < classes; c++) {
    const y = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      let s = b[i * classes + c] as number;
      for (let j = 0; j < i; j++) s -= (l[i * d + j] as number) * (y[j] as number);
      y[i] = s / (l[i * d + i] as number);
    }
    for (let i = d - 1; i >= 0; i--) {
      let s = y[i] as number;
      for (let j = i + 1; j < d; j++) s -= (l[j * d + i] as number) * (w[j * classes + c] as number);
      w[i * classes + c] = s / (l[i * d + i] as number);
    }
  }
  const prior = Array.from(
    { length: classes },
    (_, c) => trainY.filter((y) => y === c).length / trainY.length,
  );
  return (x: Float32Array): number => {
    const zx = z(x);
    let best = 0;
    let bestScore = -Infinity;
    for (let c = 0; c < classes; c++) {
      let s = prior[c] as number;
      for (let i = 0; i < d; i++) s += (zx[i] as number) * (w[i * classes + c] as number);
      if (s > bestScore) [best, bestScore] = [c, s];
    }
    return best;
  };
}

if (!hasShared) console.log(`skipped: mnist-8 / Fashion-MNIST tests (${shared} not found)`);

describe.skipIf(!hasShared)('mnist-8 cut before its last MatMul, on Fashion-MNIST', () => {
  let modelBytes: Uint8Array;
  let backbone: ImageBackbone;
  let images: DecodedImage[];
  let labels: number[];

  beforeAll(async () => {
    modelBytes = new Uint8Array(await readFile(path.join(shared, 'models/mnist-8/mnist-8.onnx')));
    backbone = await loadImageBackbone(modelBytes, { name: 'mnist-8', cutAt: MNIST_CUT, input: mnistInput });
    ({ images, labels } = await loadFashionMnist(path.join(shared, 'datasets/fashion-mnist'), 'test', {
      limit: 1000,
    }));
  });

  it('gives 256 features per image', async () => {
    expect(backbone.dims).toBe(256);
    const out = await features(backbone, images.slice(0, 7));
    expect(out.dims).toEqual([7, 256]);
    expect(out.data.every(Number.isFinite)).toBe(true);
  });

  it('features @ the original MatMul weights + bias reproduce the uncut model in ONNX Runtime (1e-4)', async () => {
    // given: the original head's weights, and the uncut model (batch 1 only) as the independent reference
    const graph = getGraph(loadModel(modelBytes));
    const weight = readFloat32(graph.initializer.find((t) => t.name === 'Parameter193') ?? {}); // [16,4,4,10] = [256,10]
    const bias = readFloat32(graph.initializer.find((t) => t.name === 'Parameter194') ?? {});
    const uncut = await session(modelBytes);
    const batch = images.slice(0, 16);
    // when
    const out = await features(backbone, batch);
    // then
    let worst = 0;
    for (const [n, image] of batch.entries()) {
      const reference = (await uncut.run(backbone.prepare([image]))).Plus214_Output_0?.data as Float32Array;
      for (let k = 0; k < 10; k++) {
        let logit = bias[k] as number;
        for (let d = 0; d < 256; d++)
          logit += (out.data[n * 256 + d] as number) * (weight[d * 10 + k] as number);
        worst = Math.max(worst, Math.abs(logit - (reference[k] as number)));
      }
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it('pretrained features beat the same network with shuffled weights (ridge probe, 500 / 500 split)', async () => {
    // given
    const shuffled = await loadImageBackbone(shuffleWeights(modelBytes, 42), {
      name: 'mnist-8-shuffled',
      cutAt: MNIST_CUT,
      input: mnistInput,
    });
    const accuracy = async (b: ImageBackbone): Promise<number> => {
      const out = await features(b, images);
      const rows = images.map((_, i) => out.data.slice(i * 256, (i + 1) * 256));
      const predict = ridgeProbe(rows.slice(0, 500), labels.slice(0, 500), 100, 10);
      return rows.slice(500).filter((x, i) => predict(x) === labels[500 + i]).length / 500;
    };
    // when
    const pretrained = await accuracy(backbone);
    const control = await accuracy(shuffled);
    // then
    console.log(
      `mnist-8 ridge probe on Fashion-MNIST: pretrained ${pretrained}, shuffled weights ${control}`,
    );
    expect(pretrained).toBeGreaterThan(control + 0.04);
  });
});
