import onnxProto from 'onnx-proto';
import { PNG } from 'pngjs';
import { float32Tensor, saveModel, valueInfo } from '../../src/engine/onnx-graph.js';
import { createRng } from '../../src/engine/rng.js';

const { onnx } = onnxProto;

export interface TinyCnnOptions {
  width?: number;
  height?: number;
  channels?: 1 | 3;
  filters?: number;
  classes?: number;
}

/**
 * A tiny seeded CNN in the shape of a real classifier: `img` [1, C, H, W] -> Conv 1x1 (filters) -> Relu ->
 * Flatten = `flat` [1, filters*H*W] -> MatMul -> `out` [1, classes]. Cut at `flat` for features.
 */
export function tinyCnn(
  seed: number,
  { width = 4, height = 4, channels = 3, filters = 2, classes = 3 }: TinyCnnOptions = {},
): { bytes: Uint8Array; conv: Float32Array } {
  const rng = createRng(seed);
  const flat = filters * width * height;
  const conv = Float32Array.from({ length: filters * channels }, () => rng.next() * 2 - 1);
  const fc = Float32Array.from({ length: flat * classes }, () => rng.next() * 2 - 1);
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'tiny',
    input: [valueInfo('img', [1, channels, height, width])],
    output: [valueInfo('out', [1, classes])],
    initializer: [
      float32Tensor('conv.w', [filters, channels, 1, 1], conv),
      float32Tensor('fc.w', [flat, classes], fc),
    ],
    node: [
      { opType: 'Conv', input: ['img', 'conv.w'], output: ['maps'] },
      { opType: 'Relu', input: ['maps'], output: ['relu'] },
      { opType: 'Flatten', input: ['relu'], output: ['flat'] },
      { opType: 'MatMul', input: ['flat', 'fc.w'], output: ['out'] },
    ],
  };
  const model = onnx.ModelProto.create({ irVersion: 7, opsetImport: [{ domain: '', version: 13 }], graph });
  return { bytes: saveModel(model), conv };
}

/** A grey PNG, `width` x `height`, every pixel `value(x, y)`. */
export function greyPng(width: number, height: number, value: (x: number, y: number) => number): Buffer {
  const png = new PNG({ width, height, colorType: 0 });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const v = Math.max(0, Math.min(255, Math.round(value(x, y))));
      png.data[i] = v;
      png.data[i + 1] = v;
      png.data[i + 2] = v;
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png, { colorType: 0 });
}
