import { describe, expect, it } from 'vitest';
import {
  addGaussianNoise,
  augmentImages,
  augmentOptionsSchema,
  flipHorizontal,
  IMAGE_AUGMENTATION_PRESET,
  isAugmentationEnabled,
  rotateImage,
  shiftImage,
} from '../src/engine/augment.js';
import type { DecodedImage } from '../src/engine/backbones/image.js';
import { createRng } from '../src/engine/rng.js';

/** A seeded random image (every pixel distinct enough that a wrong move shows). */
function randomImage(width: number, height: number, channels: 1 | 3 | 4, seed: number): DecodedImage {
  const rng = createRng(seed);
  return {
    width,
    height,
    channels,
    data: Uint8Array.from({ length: width * height * channels }, () => rng.int(256)),
  };
}

/** A black image with one white pixel at (x, y). */
function dot(size: number, x: number, y: number): DecodedImage {
  const data = new Uint8Array(size * size);
  data[y * size + x] = 255;
  return { width: size, height: size, channels: 1, data };
}

/** Intensity-weighted centre of a grey image. */
function centroid(image: DecodedImage): [number, number] {
  let sx = 0;
  let sy = 0;
  let total = 0;
  image.data.forEach((v, i) => {
    sx += v * (i % image.width);
    sy += v * Math.floor(i / image.width);
    total += v;
  });
  return [sx / total, sy / total];
}

describe('image transforms', () => {
  it('a flip twice is the identity, and a flip mirrors each row', () => {
    const image = randomImage(5, 3, 3, 1);
    expect(flipHorizontal(flipHorizontal(image))).toEqual(image);
    const flipped = flipHorizontal(image);
    expect([...flipped.data.slice(0, 3)]).toEqual([...image.data.slice(12, 15)]);
    expect(flipped.data).not.toBe(image.data);
  });

  it('a zero shift is the identity; a shift moves content and fills the uncovered side', () => {
    const image = randomImage(6, 4, 1, 2);
    expect(shiftImage(image, 0, 0)).toEqual(image);
    const moved = shiftImage(dot(7, 3, 3), 2, -1, { fill: 9 });
    expect(moved.data[2 * 7 + 5]).toBe(255);
    expect(moved.data[0]).toBe(9);
    expect(moved.data[3 * 7 + 3]).toBe(0);
  });

  it('a rotation keeps a centred dot at the centre, and rotating by 0 degrees is the identity', () => {
    const image = dot(9, 4, 4);
    for (const degrees of [-10, 7, 45, 90]) {
      const [x, y] = centroid(rotateImage(image, degrees));
      expect(x).toBeCloseTo(4, 6);
      expect(y).toBeCloseTo(4, 6);
    }
    const random = randomImage(6, 5, 3, 3);
    expect(rotateImage(random, 0)).toEqual(random);
  });

  it('a quarter turn moves an off-centre dot where the rotation says', () => {
    // (x, y) = (6, 4) is 2 px right of the centre (4, 4); y points down, so +90 degrees puts it 2 px above.
    const [x, y] = centroid(rotateImage(dot(9, 6, 4), 90));
    expect(x).toBeCloseTo(4, 6);
    expect(y).toBeCloseTo(2, 6);
  });

  it('noise has about the asked standard deviation and stays in 0..255', () => {
    const flat: DecodedImage = {
      width: 100,
      height: 100,
      channels: 1,
      data: new Uint8Array(10_000).fill(128),
    };
    const noisy = addGaussianNoise(flat, 10, createRng(4));
    const diffs = [...noisy.data].map((v) => v - 128);
    const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
    const sd = Math.sqrt(diffs.reduce((a, b) => a + (b - mean) ** 2, 0) / diffs.length);
    expect(Math.abs(mean)).toBeLessThan(0.5);
    expect(sd).toBeGreaterThan(9.5);
    expect(sd).toBeLessThan(10.5);
  });
});

describe('augmentImages', () => {
  const images = [randomImage(28, 28, 1, 5), randomImage(28, 28, 1, 6)];

  it('is off by default', () => {
    expect(isAugmentationEnabled(undefined)).toBe(false);
    expect(isAugmentationEnabled({ copies: 3, seed: 1 })).toBe(false);
    expect(augmentImages(images)).toEqual([]);
  });

  it('is deterministic for a seed, different for another, and returns new images', () => {
    const options = { ...IMAGE_AUGMENTATION_PRESET, copies: 2, seed: 7 };
    const a = augmentImages(images, options);
    const b = augmentImages(images, options);
    const c = augmentImages(images, { ...options, seed: 8 });
    expect(a).toHaveLength(4);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    for (const copy of a) expect(images.some((image) => image.data === copy.data)).toBe(false);
    expect(a[0]).toMatchObject({ width: 28, height: 28, channels: 1 });
  });

  it('flips only when allowed', () => {
    const one = [randomImage(8, 8, 3, 9)];
    const flips = augmentImages(one, { flip: true, copies: 16, seed: 1 });
    const original = flips.filter(
      (image) => Buffer.compare(image.data, one[0]?.data ?? new Uint8Array()) === 0,
    );
    const mirrored = flips.filter(
      (image) => Buffer.compare(image.data, flipHorizontal(one[0] as DecodedImage).data) === 0,
    );
    expect(original.length + mirrored.length).toBe(16);
    expect(mirrored.length).toBeGreaterThan(0);
    expect(
      augmentImages(one, { shift: 1, copies: 16, seed: 1 }).some(
        (image) => Buffer.compare(image.data, flipHorizontal(one[0] as DecodedImage).data) === 0,
      ),
    ).toBe(false);
  });

  it('validates its options', () => {
    expect(
      augmentOptionsSchema.safeParse({ shift: 2, rotate: 10, flip: true, noise: 8, copies: 2, seed: 3 })
        .success,
    ).toBe(true);
    expect(augmentOptionsSchema.safeParse({ shift: -1 }).success).toBe(false);
    expect(augmentOptionsSchema.safeParse({ copies: 0 }).success).toBe(false);
  });
});
