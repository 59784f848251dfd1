// Fixture factories for the engine tests: synthetic texts and images with a known class structure, and small
// backbones of every kind (hash, the tiny BERT, generated image networks).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import {
  type DecodedImage,
  type ImageInputSpec,
  loadImageBackbone,
} from '../../src/engine/backbones/image.js';
import { loadTextBackbone, readTextBackboneDir } from '../../src/engine/backbones/text.js';
import {
  type Backbone,
  type BackboneConfig,
  HASH_NGRAMS,
  type LabelledFeatures,
  openBackbone,
  type RawInput,
} from '../../src/engine/index.js';
import { float32Tensor, saveModel, valueInfo } from '../../src/engine/onnx-graph.js';
import { createRng, type Rng } from '../../src/engine/rng.js';
import { type TinyBertOptions, writeTinyBertLayout } from './tiny-bert.js';

const { onnx } = onnxProto;

export const pick = <T>(items: readonly T[], rng: Rng): T => items[rng.int(items.length)] as T;

export function gaussian(rng: Rng): number {
  const u = 1 - rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

export interface Row<T extends RawInput = RawInput> {
  input: T;
  label: string;
}

// ---- Texts ----

/** Topic words; every word is in the tiny BERT's vocabulary too, so the same texts serve every text backbone. */
export const TOPICS: Record<string, readonly string[]> = {
  pets: ['cat', 'dog', 'mat', 'sat', 'lazy'],
  money: ['money', 'bank', 'refund', 'card', 'need'],
  films: ['movie', 'love', 'hate', 'play', 'book'],
};
const FILLER = ['the', 'a', 'an', 'is', 'was', 'on', 'in', 'of', 'to', 'and', 'it', 'this', 'that', 'my'];

/** Short sentences: 2 topic words among 3-6 filler words, with a 5% chance of a word from another topic. */
export function topicTexts(
  n: number,
  seed: number,
  topics: Record<string, readonly string[]> = TOPICS,
): Row<string>[] {
  const rng = createRng(seed);
  const labels = Object.keys(topics);
  return Array.from({ length: n }, (_, i) => {
    // Labels in turn, so every label has rows in every slice.
    const label = labels[i % labels.length] as string;
    const words = Array.from({ length: 3 + rng.int(4) }, () => pick(FILLER, rng));
    for (let k = 0; k < 2; k++) words.splice(rng.int(words.length + 1), 0, pick(topics[label] ?? [], rng));
    if (rng.next() < 0.05) words.push(pick(topics[pick(labels, rng)] ?? [], rng));
    return { input: words.join(' '), label };
  });
}

// ---- Images ----

/**
 * Grey images of `side` x `side` pixels: class c is a bright bar (row c for c < side, else a column) on a dark,
 * noisy background, with pixel noise of standard deviation `noise`.
 */
export function barImages(
  n: number,
  seed: number,
  { classes = 3, side = 4, noise = 40 }: { classes?: number; side?: number; noise?: number } = {},
): Row<DecodedImage>[] {
  const rng = createRng(seed);
  return Array.from({ length: n }, (_, i) => {
    const c = i % classes;
    const data = new Uint8Array(side * side);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const on = c < side ? y === c : x === c - side;
        const v = (on ? 180 : 40) + noise * gaussian(rng);
        data[y * side + x] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
    return { input: { width: side, height: side, channels: 1, data }, label: `bar-${c}` };
  });
}

/** A grey-image spec for the generated networks (pixels / 255). */
export const greyInput = (side: number): ImageInputSpec => ({
  name: 'img',
  width: side,
  height: side,
  channels: 1,
  scale: 1 / 255,
  mean: [0],
  std: [1],
});

/**
 * A small seeded CNN: img [1, 1, side, side] -> Conv 1x1 (`filters`) -> Relu -> Flatten = `flat` -> MatMul -> out
 * [1, 3]. Cut at `flat` it gives filters x side x side features; cut at `img`, the pixels themselves.
 */
export function smallCnn(seed: number, { side = 4, filters = 2 } = {}): Uint8Array {
  const rng = createRng(seed);
  const features = filters * side * side;
  const conv = Float32Array.from({ length: filters }, () => rng.next() * 2 - 0.5);
  const fc = Float32Array.from({ length: features * 3 }, () => rng.next() * 2 - 1);
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'small-cnn',
    input: [valueInfo('img', [1, 1, side, side])],
    output: [valueInfo('out', [1, 3])],
    initializer: [
      float32Tensor('conv.w', [filters, 1, 1, 1], conv),
      float32Tensor('fc.w', [features, 3], fc),
    ],
    node: [
      { opType: 'Conv', name: 'conv', input: ['img', 'conv.w'], output: ['maps'] },
      { opType: 'Relu', name: 'relu', input: ['maps'], output: ['relu'] },
      { opType: 'Flatten', name: 'flatten', input: ['relu'], output: ['flat'] },
      { opType: 'MatMul', name: 'fc', input: ['flat', 'fc.w'], output: ['out'] },
    ],
  };
  return saveModel(
    onnx.ModelProto.create({ irVersion: 7, opsetImport: [{ domain: '', version: 13 }], graph }),
  );
}

/** An image backbone of the small CNN, cut at `cutAt` ('flat': conv features; 'img': the raw pixels). */
export async function openImageBackbone({
  seed = 3,
  side = 4,
  cutAt = 'flat',
  strictSize = false,
}: {
  seed?: number;
  side?: number;
  cutAt?: string;
  strictSize?: boolean;
} = {}): Promise<Backbone> {
  const model = smallCnn(seed, { side });
  const loaded = await loadImageBackbone(model, {
    name: `small-cnn-${cutAt}`,
    cutAt,
    input: { ...greyInput(side), ...(strictSize ? { strictSize } : {}) },
  });
  return openBackbone(loaded.config, { model });
}

// ---- Text backbone ----

/** The tiny BERT written to a temporary directory, read back as the store would hold it, and opened. */
export async function openTinyBert(options: TinyBertOptions = {}): Promise<{
  backbone: Backbone;
  config: BackboneConfig;
  files: { model: Uint8Array; tokenizerJson: string; tokenizerConfigJson?: string };
  cleanup: () => Promise<void>;
}> {
  const dir = await mkdtemp(path.join(tmpdir(), 'graft-engine-tiny-bert-'));
  await writeTinyBertLayout(dir, { seed: 42, ...options });
  const layout = await readTextBackboneDir(dir);
  const { config } = await loadTextBackbone(layout, { name: 'tiny-bert' });
  const files = {
    model: layout.model,
    tokenizerJson: layout.tokenizerJson,
    ...(layout.tokenizerConfigJson === undefined ? {} : { tokenizerConfigJson: layout.tokenizerConfigJson }),
  };
  const backbone = await openBackbone(config, files);
  return { backbone, config, files, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function openHashBackbone(dims = 2 ** 12): Promise<Backbone> {
  return openBackbone({ ...HASH_NGRAMS, dims });
}

// ---- Splits ----

/** Features and labels of rows, from a backbone. */
export async function labelled(backbone: Backbone, rows: readonly Row[]): Promise<LabelledFeatures> {
  return { features: await backbone.extract(rows.map((r) => r.input)), labels: rows.map((r) => r.label) };
}

/** The first `fraction` of each label's rows for training, the rest for validation (order kept). */
export function splitRows<T extends Row>(
  rows: readonly T[],
  fraction = 0.75,
): { train: T[]; validation: T[] } {
  const seen = new Map<string, number>();
  const totals = new Map<string, number>();
  for (const row of rows) totals.set(row.label, (totals.get(row.label) ?? 0) + 1);
  const train: T[] = [];
  const validation: T[] = [];
  for (const row of rows) {
    const k = seen.get(row.label) ?? 0;
    seen.set(row.label, k + 1);
    (k < Math.round((totals.get(row.label) ?? 0) * fraction) ? train : validation).push(row);
  }
  return { train, validation };
}

/** Accuracy of probability rows against labels, columns in `labels` order. */
export function accuracy(
  probabilities: readonly ArrayLike<number>[],
  rows: readonly Row[],
  labels: readonly string[],
): number {
  let correct = 0;
  probabilities.forEach((p, i) => {
    let best = 0;
    for (let c = 1; c < p.length; c++) if ((p[c] as number) > (p[best] as number)) best = c;
    if (labels[best] === rows[i]?.label) correct++;
  });
  return correct / rows.length;
}
