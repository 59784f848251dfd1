import { existsSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  FASHION_MNIST_CLASSES,
  loadFashionMnist,
  parseIdxImages,
  parseIdxLabels,
} from '../src/engine/fashion-mnist.js';
import { GraftError } from '../src/errors.js';
import { SHARED_DIR } from './support/fixtures.js';

const fashionDir = path.join(SHARED_DIR, 'datasets/fashion-mnist');
const hasShared = existsSync(fashionDir);

function idx(magic: number, dims: number[], body: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic, 0);
  for (const [i, d] of dims.entries()) header.writeUInt32BE(d, 4 + 4 * i);
  return Buffer.concat([header, Buffer.from(body)]);
}

describe('idx reader', () => {
  it('reads images (row-major, grey) and labels, gzipped or not', () => {
    // given: two 3x2 images and their labels
    const pixels = [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15];
    const images = idx(0x803, [2, 2, 3], pixels);
    const labels = idx(0x801, [2], [9, 0]);
    for (const wrap of [(b: Buffer) => b, (b: Buffer) => gzipSync(b)]) {
      // when
      const decoded = parseIdxImages(wrap(images));
      // then
      expect(decoded.map(({ width, height, channels }) => ({ width, height, channels }))).toEqual([
        { width: 3, height: 2, channels: 1 },
        { width: 3, height: 2, channels: 1 },
      ]);
      expect([...(decoded[1]?.data ?? [])]).toEqual(pixels.slice(6));
      expect(parseIdxLabels(wrap(labels))).toEqual([9, 0]);
    }
  });

  it('rejects a wrong magic number or a truncated file', () => {
    expect(() => parseIdxImages(idx(0x801, [1], [1]))).toThrow(/Not an idx image file: magic 0x00000801/);
    expect(() => parseIdxImages(idx(0x803, [2, 2, 2], [1, 2, 3]))).toThrow(GraftError);
    expect(() => parseIdxLabels(idx(0x801, [3], [1]))).toThrow(/holds 1 labels; it says 3/);
  });
});

if (!hasShared) console.log(`skipped: Fashion-MNIST files (${fashionDir} not found)`);

describe.skipIf(!hasShared)('Fashion-MNIST from ../shared', () => {
  it('loads the test split: 10000 images of 28x28, 1000 per class', async () => {
    const { images, labels, classes } = await loadFashionMnist(fashionDir, 'test');
    expect(images).toHaveLength(10_000);
    expect(images[0]).toMatchObject({ width: 28, height: 28, channels: 1 });
    expect(classes).toEqual(FASHION_MNIST_CLASSES);
    expect(classes[9]).toBe('Ankle boot');
    const counts = new Array(10).fill(0);
    for (const label of labels) counts[label]++;
    expect(counts).toEqual(new Array(10).fill(1000));
    // the published first test image is an ankle boot
    expect(labels[0]).toBe(9);
    const limited = await loadFashionMnist(fashionDir, 'test', { limit: 5 });
    expect(limited.images).toHaveLength(5);
  });
});
