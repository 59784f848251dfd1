// Image augmentation, the data-preparation step of the recipe: seeded random shifts, small rotations, flips
// (only where the task allows them) and noise, on decoded images. The copies go through the backbone like
// any other row.
import { z } from 'zod';
import type { DecodedImage } from './backbones/image.js';
import { createRng, type Rng } from './rng.js';

/** Which transforms to apply and how strongly; everything is off unless set. */
export interface AugmentOptions {
  /** Largest shift in pixels along each axis (a whole number drawn uniformly in [-shift, shift]). @default 0 */
  shift?: number;
  /** Largest rotation in degrees (drawn uniformly in [-rotate, rotate]), about the image centre. @default 0 */
  rotate?: number;
  /** Mirror left-right with probability 1/2; only for tasks whose labels survive a mirror. @default false */
  flip?: boolean;
  /** Standard deviation of additive gaussian noise, in pixel units (0..255). @default 0 */
  noise?: number;
  /** Augmented copies made of each image. @default 1 */
  copies?: number;
  /** Value of pixels shifted or rotated in from outside the image. @default 0 */
  fill?: number;
  /** @default 0 */
  seed?: number;
}

/** zod schema of `AugmentOptions`, for task or job settings. */
export const augmentOptionsSchema = z.object({
  shift: z.number().int().min(0).max(64).optional(),
  rotate: z.number().min(0).max(180).optional(),
  flip: z.boolean().optional(),
  noise: z.number().min(0).max(128).optional(),
  copies: z.number().int().min(1).max(32).optional(),
  fill: z.number().int().min(0).max(255).optional(),
  seed: z.number().int().optional(),
});

/** A mild setting for small grey images such as Fashion-MNIST (flip stays a per-task decision). */
export const IMAGE_AUGMENTATION_PRESET: AugmentOptions = { shift: 2, rotate: 10, noise: 8 };

/** True when the options turn on at least one transform. */
export function isAugmentationEnabled(options: AugmentOptions | undefined): boolean {
  if (!options) return false;
  const { shift = 0, rotate = 0, flip = false, noise = 0 } = options;
  return shift > 0 || rotate > 0 || flip || noise > 0;
}

const clampByte = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Mirrors an image left-right. */
export function flipHorizontal(image: DecodedImage): DecodedImage {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (y * width + x) * channels;
      const to = (y * width + (width - 1 - x)) * channels;
      for (let c = 0; c < channels; c++) out[to + c] = data[from + c] as number;
    }
  }
  return { width, height, channels, data: out };
}

/** Moves the content `dx` pixels right and `dy` pixels down (whole pixels); uncovered pixels get `fill`. */
export function shiftImage(image: DecodedImage, dx: number, dy: number, { fill = 0 } = {}): DecodedImage {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(data.length).fill(fill);
  for (let y = 0; y < height; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= height) continue;
    for (let x = 0; x < width; x++) {
      const sx = x - dx;
      if (sx < 0 || sx >= width) continue;
      const from = (sy * width + sx) * channels;
      const to = (y * width + x) * channels;
      for (let c = 0; c < channels; c++) out[to + c] = data[from + c] as number;
    }
  }
  return { width, height, channels, data: out };
}

/**
 * Rotates by `degrees` (counter-clockwise as displayed, y pointing down) about the image centre
 * ((width-1)/2, (height-1)/2), sampling bilinearly; pixels from outside the image get `fill`.
 */
export function rotateImage(image: DecodedImage, degrees: number, { fill = 0 } = {}): DecodedImage {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(data.length);
  const theta = (degrees * Math.PI) / 180;
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const sample = (x: number, y: number, c: number): number =>
    x < 0 || x >= width || y < 0 || y >= height ? fill : (data[(y * width + x) * channels + c] as number);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // Inverse mapping: where in the source does this output pixel come from.
      const u = x - cx;
      const v = y - cy;
      const sx = cos * u - sin * v + cx;
      const sy = sin * u + cos * v + cy;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      for (let c = 0; c < channels; c++) {
        const top = sample(x0, y0, c) * (1 - fx) + sample(x0 + 1, y0, c) * fx;
        const bottom = sample(x0, y0 + 1, c) * (1 - fx) + sample(x0 + 1, y0 + 1, c) * fx;
        out[(y * width + x) * channels + c] = clampByte(top * (1 - fy) + bottom * fy);
      }
    }
  }
  return { width, height, channels, data: out };
}

/** A standard normal draw (Box-Muller). */
function gaussian(rng: Rng): number {
  const u = 1 - rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** Adds gaussian noise of standard deviation `std` (pixel units) to every value, clamped to 0..255. */
export function addGaussianNoise(image: DecodedImage, std: number, rng: Rng): DecodedImage {
  const data = new Uint8Array(image.data.length);
  for (let i = 0; i < data.length; i++) data[i] = clampByte((image.data[i] as number) + std * gaussian(rng));
  return { ...image, data };
}

/** One random augmentation of one image, drawing from `rng`: rotate, shift, flip, then noise. */
export function augmentImage(image: DecodedImage, options: AugmentOptions, rng: Rng): DecodedImage {
  const { shift = 0, rotate = 0, flip = false, noise = 0, fill = 0 } = options;
  let out: DecodedImage = { ...image, data: new Uint8Array(image.data) };
  if (rotate > 0) out = rotateImage(out, (2 * rng.next() - 1) * rotate, { fill });
  if (shift > 0) {
    const dx = rng.int(2 * shift + 1) - shift;
    const dy = rng.int(2 * shift + 1) - shift;
    if (dx !== 0 || dy !== 0) out = shiftImage(out, dx, dy, { fill });
  }
  if (flip && rng.next() < 0.5) out = flipHorizontal(out);
  if (noise > 0) out = addGaussianNoise(out, noise, rng);
  return out;
}

/**
 * Augmented copies of a batch of images: `copies` per image, in order (image 0's copies first), new arrays
 * throughout; the same seed gives the same copies. Returns [] when no transform is on (augmentation is off by
 * default). The originals are not included: the caller keeps them and adds these.
 */
export function augmentImages(images: readonly DecodedImage[], options: AugmentOptions = {}): DecodedImage[] {
  if (!isAugmentationEnabled(options)) return [];
  const { copies = 1, seed = 0 } = options;
  const rng = createRng(seed);
  const out: DecodedImage[] = [];
  for (const image of images) {
    for (let k = 0; k < copies; k++) out.push(augmentImage(image, options, rng));
  }
  return out;
}
