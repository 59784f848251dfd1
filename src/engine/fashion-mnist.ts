// Reader for the idx files of MNIST-style datasets (Fashion-MNIST as published by Zalando: gzipped idx3 images,
// idx1 labels). Used by tests and by the evaluation command.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GraftError } from '../errors.js';
import type { DecodedImage } from './backbones/image.js';

/** Fashion-MNIST's ten classes, by label index. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

const IDX_UBYTE_IMAGES = 0x00000803;
const IDX_UBYTE_LABELS = 0x00000801;

function maybeGunzip(bytes: Uint8Array): Buffer {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(buffer) : buffer;
}

function checkMagic(buffer: Buffer, expected: number, what: string): void {
  if (buffer.length < 8 || buffer.readUInt32BE(0) !== expected) {
    const found =
      buffer.length >= 4 ? `0x${buffer.readUInt32BE(0).toString(16).padStart(8, '0')}` : 'nothing';
    throw new GraftError(
      'INVALID_DATASET',
      `Not an idx ${what} file: magic ${found}, expected 0x${expected.toString(16).padStart(8, '0')}.`,
    );
  }
}

/**
 * Parses an idx3-ubyte image file (gzipped or not) into grey images. Each image's `data` is a view into one
 * shared buffer: copy it before changing it.
 */
export function parseIdxImages(bytes: Uint8Array): DecodedImage[] {
  const buffer = maybeGunzip(bytes);
  checkMagic(buffer, IDX_UBYTE_IMAGES, 'image');
  const count = buffer.readUInt32BE(4);
  const height = buffer.readUInt32BE(8);
  const width = buffer.readUInt32BE(12);
  const size = width * height;
  if (buffer.length !== 16 + count * size) {
    throw new GraftError(
      'INVALID_DATASET',
      `idx image file holds ${buffer.length - 16} pixel bytes; ${count} images of ${width}x${height} need ${count * size}.`,
    );
  }
  const pixels = new Uint8Array(buffer.buffer, buffer.byteOffset + 16, count * size);
  return Array.from({ length: count }, (_, i) => ({
    width,
    height,
    channels: 1 as const,
    data: pixels.subarray(i * size, (i + 1) * size),
  }));
}

/** Parses an idx1-ubyte label file (gzipped or not) into label indices. */
export function parseIdxLabels(bytes: Uint8Array): number[] {
  const buffer = maybeGunzip(bytes);
  checkMagic(buffer, IDX_UBYTE_LABELS, 'label');
  const count = buffer.readUInt32BE(4);
  if (buffer.length !== 8 + count) {
    throw new GraftError(
      'INVALID_DATASET',
      `idx label file holds ${buffer.length - 8} labels; it says ${count}.`,
    );
  }
  return Array.from(buffer.subarray(8, 8 + count));
}

/** A labelled image set. */
export interface ImageDataset {
  images: DecodedImage[];
  /** Label index per image, into `classes`. */
  labels: number[];
  classes: readonly string[];
}

/**
 * Loads one split of Fashion-MNIST from a directory holding the published files
 * (`{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`); `limit` keeps the first rows only.
 */
export async function loadFashionMnist(
  dir: string,
  split: 'train' | 'test',
  { limit }: { limit?: number } = {},
): Promise<ImageDataset> {
  const prefix = split === 'train' ? 'train' : 't10k';
  const [imageBytes, labelBytes] = await Promise.all([
    readFile(path.join(dir, `${prefix}-images-idx3-ubyte.gz`)),
    readFile(path.join(dir, `${prefix}-labels-idx1-ubyte.gz`)),
  ]);
  const images = parseIdxImages(imageBytes);
  const labels = parseIdxLabels(labelBytes);
  if (images.length !== labels.length) {
    throw new GraftError(
      'INVALID_DATASET',
      `Fashion-MNIST ${split}: ${images.length} images but ${labels.length} labels.`,
    );
  }
  const n = limit === undefined ? images.length : Math.min(limit, images.length);
  return { images: images.slice(0, n), labels: labels.slice(0, n), classes: FASHION_MNIST_CLASSES };
}
