import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadFashionMnist } from '../src/engine/fashion-mnist.js';
import { greyPngBase64 } from './png.js';

/** Rows of a dataset as the evaluation sends them: one input (a text, or a base64 PNG) and a label each. */
export interface Rows {
  /** Texts, or base64 PNG files. */
  inputs: string[];
  labels: string[];
  /** The labels in a fixed order (first appearance in the training split). */
  classes: string[];
  kind: 'text' | 'image';
}

export interface DatasetSplits {
  name: string;
  train: Rows;
  test: Rows;
}

/** Reads `train.jsonl` / `test.jsonl` ({"text", "label"} a line) of a text dataset. */
export async function loadTextDataset(sharedDir: string, name: string): Promise<DatasetSplits> {
  const read = async (split: 'train' | 'test'): Promise<Rows> => {
    const file = path.join(sharedDir, 'datasets', name, `${split}.jsonl`);
    const inputs: string[] = [];
    const labels: string[] = [];
    for (const [i, line] of (await readFile(file, 'utf8')).split('\n').entries()) {
      if (line.trim() === '') continue;
      const row = JSON.parse(line) as { text?: unknown; label?: unknown };
      if (typeof row.text !== 'string' || (typeof row.label !== 'string' && typeof row.label !== 'number')) {
        throw new Error(`${file}:${i + 1}: expected {"text": string, "label": string}`);
      }
      inputs.push(row.text);
      labels.push(String(row.label));
    }
    return { inputs, labels, classes: [...new Set(labels)], kind: 'text' };
  };
  const [train, test] = await Promise.all([read('train'), read('test')]);
  return { name, train, test: { ...test, classes: train.classes } };
}

/**
 * Fashion-MNIST from its idx files, each image encoded as the grey PNG a user would upload. The images are light
 * garments on a dark ground (mean border pixel about 23, mean centre pixel about 147 of 255), the same polarity
 * as mnist-8's light digits on black: no `invert` is needed.
 */
export async function loadFashionMnistDataset(
  sharedDir: string,
  { trainLimit, testLimit }: { trainLimit?: number; testLimit?: number } = {},
): Promise<DatasetSplits> {
  const dir = path.join(sharedDir, 'datasets', 'fashion-mnist');
  const convert = (set: Awaited<ReturnType<typeof loadFashionMnist>>): Rows => ({
    inputs: set.images.map((image) => greyPngBase64(image)),
    labels: set.labels.map((i) => set.classes[i] ?? String(i)),
    classes: [...set.classes],
    kind: 'image',
  });
  const [train, test] = await Promise.all([
    loadFashionMnist(dir, 'train', trainLimit === undefined ? {} : { limit: trainLimit }),
    loadFashionMnist(dir, 'test', testLimit === undefined ? {} : { limit: testLimit }),
  ]);
  return { name: 'fashion-mnist', train: convert(train), test: convert(test) };
}

const TREC_DESCRIPTIONS: Record<string, string> = {
  ABBR: 'abbreviation',
  DESC: 'description',
  ENTY: 'entity',
  HUM: 'human',
  LOC: 'location',
  NUM: 'number',
};

const OTHER_DESCRIPTIONS: Record<string, Record<string, string>> = {
  sst2: { positive: 'positive', negative: 'negative' },
  'sms-spam': { ham: 'ordinary message', spam: 'spam' },
};

/**
 * What each label means, for `zero-shot` (the backbone embeds these): banking77's label names with '_' as spaces,
 * TREC's coarse classes spelled out, the label itself elsewhere.
 */
export function labelDescriptions(dataset: string, classes: readonly string[]): Record<string, string> {
  const describe = (label: string) => {
    if (dataset === 'banking77') return label.replace(/_/g, ' ');
    if (dataset === 'trec') return TREC_DESCRIPTIONS[label] ?? label;
    return OTHER_DESCRIPTIONS[dataset]?.[label] ?? label;
  };
  return Object.fromEntries(classes.map((label) => [label, describe(label)]));
}

/** The rows at `indices`. */
export function pick(rows: Rows, indices: readonly number[]): Rows {
  return {
    ...rows,
    inputs: indices.map((i) => rows.inputs[i] as string),
    labels: indices.map((i) => rows.labels[i] as string),
  };
}

/** The JSONL body of an upload: `{"text"|"image": ..., "label": ...}` a line. */
export function toJsonl(rows: Rows): string {
  const field = rows.kind === 'text' ? 'text' : 'image';
  return `${rows.inputs.map((input, i) => JSON.stringify({ [field]: input, label: rows.labels[i] })).join('\n')}\n`;
}
