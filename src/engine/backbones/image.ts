// Image backbones: any ONNX CNN cut at a named feature tensor. Decoding, resizing and normalisation run in
// TypeScript (`prepare`); the cut network (and the optional raw-pixel concat) is the graph.
import { createHash } from 'node:crypto';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { z } from 'zod';
import { GraftError } from '../../errors.js';
import { NAME_PATTERN } from '../../names.js';
import type { ExecutionProvider, InputTensor } from '../../runtime/onnx.js';
import {
  AttributeType,
  cutAtTensor,
  dataInputs,
  inferOutputShapes,
  loadModel,
  type ModelProto,
  saveModel,
  setOutputs,
  toNumber,
  uniqueName,
  valueInfo,
} from '../onnx-graph.js';
import { type DenseBackbone, FEATURES_OUTPUT } from './dense.js';
import { parseConfig } from './parse-config.js';

/** An image already decoded: `data` holds `height` rows of `width` pixels of `channels` bytes (HWC, 0..255). */
export interface DecodedImage {
  readonly width: number;
  readonly height: number;
  /** 1 grey, 3 RGB, 4 RGBA (alpha is ignored). */
  readonly channels: 1 | 3 | 4;
  readonly data: Uint8Array;
}

/** What an image backbone takes: PNG or JPEG file bytes, or a decoded image. */
export type ImageInput = Uint8Array | DecodedImage;

/** The model's input tensor and how pixels become its values. */
export interface ImageInputSpec {
  /** Name of the model's image input (NCHW float32). */
  name: string;
  width: number;
  height: number;
  channels: 1 | 3;
  /** Multiplies pixel values 0..255, e.g. 1/255. */
  scale: number;
  /** Per channel (or one for all), subtracted after scaling. */
  mean: number[];
  /** Per channel (or one for all), divides after subtracting the mean. */
  std: number[];
  /** Maps a pixel v to 255 - v before scaling (mnist-8 wants a light digit on a dark ground). */
  invert?: boolean;
  /** Reject images of another size (INVALID_DATASET) instead of resizing them (bilinear). */
  strictSize?: boolean;
}

/** The stored, serialisable configuration of an image backbone (also kept in every exported model). */
export interface ImageBackboneConfig {
  kind: 'image';
  name: string;
  /** Width of `features`: the cut tensor's size, plus width x height x channels with `includeRawInput`. */
  dims: number;
  /** Name of the tensor the network is cut at (e.g. the input of its last MatMul). */
  cutAt: string;
  input: ImageInputSpec;
  /** "Features + raw input": concatenates the flattened preprocessed pixels to the features, in the graph. */
  includeRawInput?: boolean;
  /** SHA-256 (hex) of the original, uncut model file. */
  sha256: string;
}

const MAX_SIDE = 4096;
/** Decoding refuses images above this many pixels (a small file can declare a huge image). */
export const MAX_IMAGE_PIXELS = 25_000_000;

const channelValues = z.array(z.number().finite()).min(1).max(3);

/** zod schema of `ImageBackboneConfig` (a member of the engine's backbone union, keyed on `kind`). */
export const imageBackboneSchema = z.object({
  kind: z.literal('image'),
  name: z.string().regex(NAME_PATTERN, 'must be 1-63 characters of a-z, 0-9 and -'),
  dims: z.number().int().min(1),
  cutAt: z.string().min(1),
  input: z
    .object({
      name: z.string().min(1),
      width: z.number().int().min(1).max(MAX_SIDE),
      height: z.number().int().min(1).max(MAX_SIDE),
      channels: z.union([z.literal(1), z.literal(3)]),
      scale: z.number().finite().positive(),
      mean: channelValues,
      std: channelValues.refine((s) => s.every((v) => v > 0), 'must be positive'),
      invert: z.boolean().optional(),
      strictSize: z.boolean().optional(),
    })
    .refine(
      (i) => [1, i.channels].includes(i.mean.length) && [1, i.channels].includes(i.std.length),
      'mean and std need one value, or one per channel',
    ),
  includeRawInput: z.boolean().optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
});

/** Validates an image backbone configuration; throws INVALID_OPTIONS saying which fields are wrong. */
export function parseImageBackboneConfig(value: unknown): ImageBackboneConfig {
  return parseConfig(imageBackboneSchema, value, 'image backbone');
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_MAGIC = [0xff, 0xd8, 0xff];
const startsWith = (bytes: Uint8Array, magic: number[]): boolean => magic.every((b, i) => bytes[i] === b);

function tooLarge(width: number, height: number): GraftError {
  return new GraftError(
    'INVALID_DATASET',
    `image is ${width}x${height}: at most ${MAX_IMAGE_PIXELS} pixels are accepted; downscale it first.`,
  );
}

/**
 * Decodes PNG or JPEG bytes (detected by their magic bytes) to RGB(A) pixels. Anything else, a corrupt file or
 * an image above `MAX_IMAGE_PIXELS` throws INVALID_DATASET.
 */
export function decodeImage(bytes: Uint8Array): DecodedImage {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (startsWith(bytes, PNG_MAGIC)) {
    // IHDR is always the first chunk: width and height sit at bytes 16..23, before any inflating.
    if (bytes.length >= 24) {
      const width = buffer.readUInt32BE(16);
      const height = buffer.readUInt32BE(20);
      if (width * height > MAX_IMAGE_PIXELS) throw tooLarge(width, height);
    }
    try {
      // pngjs expands palette / grey / 16-bit images to 8-bit RGBA.
      const png = PNG.sync.read(buffer);
      return { width: png.width, height: png.height, channels: 4, data: new Uint8Array(png.data) };
    } catch (err) {
      throw new GraftError('INVALID_DATASET', `corrupt PNG image (${(err as Error).message}).`, {
        cause: err,
      });
    }
  }
  if (startsWith(bytes, JPEG_MAGIC)) {
    try {
      const image = jpeg.decode(buffer, {
        useTArray: true,
        formatAsRGBA: false,
        maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6,
        maxMemoryUsageInMB: 512,
      });
      return { width: image.width, height: image.height, channels: 3, data: image.data };
    } catch (err) {
      const message = (err as Error).message;
      if (/maxResolutionInMP|maxMemoryUsageInMB/.test(message)) {
        throw new GraftError('INVALID_DATASET', `JPEG image too large (${message}).`, { cause: err });
      }
      throw new GraftError('INVALID_DATASET', `corrupt JPEG image (${message}).`, { cause: err });
    }
  }
  throw new GraftError('INVALID_DATASET', 'not a PNG or JPEG image.');
}

function checkDecoded(image: DecodedImage): DecodedImage {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new GraftError('INVALID_DATASET', `image has an invalid size ${width}x${height}.`);
  }
  if (![1, 3, 4].includes(channels)) {
    throw new GraftError('INVALID_DATASET', `image has ${channels} channels; 1, 3 or 4 are supported.`);
  }
  if (data.length !== width * height * channels) {
    throw new GraftError(
      'INVALID_DATASET',
      `image data holds ${data.length} bytes; ${width}x${height}x${channels} needs ${width * height * channels}.`,
    );
  }
  return image;
}

/** A decoded image from either kind of input (file bytes are decoded; a decoded image is checked). */
export function toDecodedImage(input: ImageInput): DecodedImage {
  return input instanceof Uint8Array ? decodeImage(input) : checkDecoded(input);
}

/**
 * One float plane per output channel (CHW, values 0..255): grey from RGB by Rec. 601 luma
 * (0.299 R + 0.587 G + 0.114 B), RGB from grey by repeating it; alpha is dropped.
 */
export function toChannelPlanes(image: DecodedImage, channels: 1 | 3): Float32Array {
  const { width, height, channels: from, data } = image;
  const size = width * height;
  const planes = new Float32Array(size * channels);
  for (let p = 0; p < size; p++) {
    const o = p * from;
    if (from === 1) {
      const v = data[o] as number;
      for (let c = 0; c < channels; c++) planes[c * size + p] = v;
    } else if (channels === 3) {
      planes[p] = data[o] as number;
      planes[size + p] = data[o + 1] as number;
      planes[2 * size + p] = data[o + 2] as number;
    } else {
      planes[p] =
        0.299 * (data[o] as number) + 0.587 * (data[o + 1] as number) + 0.114 * (data[o + 2] as number);
    }
  }
  return planes;
}

/**
 * Bilinear resize of CHW planes with half-pixel centres (as OpenCV's INTER_LINEAR and ONNX Resize
 * `half_pixel`); samples outside the image clamp to the edge. No anti-aliasing: a big downscale aliases.
 */
export function resizeBilinear(
  planes: Float32Array,
  channels: number,
  from: { width: number; height: number },
  to: { width: number; height: number },
): Float32Array {
  const { width: w, height: h } = from;
  const { width: W, height: H } = to;
  if (w === W && h === H) return planes;
  const out = new Float32Array(channels * W * H);
  const sx = w / W;
  const sy = h / H;
  for (let y = 0; y < H; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), h - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, h - 1);
    const dy = fy - y0;
    for (let x = 0; x < W; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), w - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, w - 1);
      const dx = fx - x0;
      for (let c = 0; c < channels; c++) {
        const base = c * w * h;
        const top =
          (planes[base + y0 * w + x0] as number) * (1 - dx) + (planes[base + y0 * w + x1] as number) * dx;
        const bottom =
          (planes[base + y1 * w + x0] as number) * (1 - dx) + (planes[base + y1 * w + x1] as number) * dx;
        out[c * W * H + y * W + x] = top * (1 - dy) + bottom * dy;
      }
    }
  }
  return out;
}

/**
 * Builds the `prepare` of an image backbone from its input spec alone (serving rebuilds it from the config kept
 * in the model): decode, convert channels, resize (or reject with `strictSize`), invert, scale, normalise, and
 * pack the batch as one NCHW float32 tensor. A bad image throws INVALID_DATASET naming its index.
 */
export function createImagePreparer(
  spec: ImageInputSpec,
): (images: readonly ImageInput[]) => Record<string, InputTensor> {
  const { name, width, height, channels, scale, mean, std, invert = false, strictSize = false } = spec;
  const plane = width * height;
  // Per channel: value = (pixel * scale - mean) / std = pixel * a + b.
  const a = Array.from({ length: channels }, (_, c) => scale / (std[c] ?? (std[0] as number)));
  const b = Array.from(
    { length: channels },
    (_, c) => -(mean[c] ?? (mean[0] as number)) / (std[c] ?? (std[0] as number)),
  );
  return (images) => {
    const data = new Float32Array(images.length * channels * plane);
    images.forEach((input, index) => {
      let image: DecodedImage;
      try {
        image = toDecodedImage(input);
        if (strictSize && (image.width !== width || image.height !== height)) {
          throw new GraftError(
            'INVALID_DATASET',
            `image is ${image.width}x${image.height}; this backbone expects ${width}x${height} (width x height).`,
          );
        }
      } catch (err) {
        if (!(err instanceof GraftError)) throw err;
        throw new GraftError('INVALID_DATASET', `Image ${index}: ${err.message}`, {
          cause: err,
          details: { index },
        });
      }
      const planes = resizeBilinear(toChannelPlanes(image, channels), channels, image, { width, height });
      const offset = index * channels * plane;
      for (let c = 0; c < channels; c++) {
        const ac = a[c] as number;
        const bc = b[c] as number;
        for (let p = 0; p < plane; p++) {
          const v = planes[c * plane + p] as number;
          data[offset + c * plane + p] = (invert ? 255 - v : v) * ac + bc;
        }
      }
    });
    return { [name]: { type: 'float32', data, dims: [images.length, channels, height, width] } };
  };
}

/** What `loadImageBackbone` needs; a stored `ImageBackboneConfig` fits too (its dims and sha256 are checked). */
export interface ImageBackboneOptions {
  kind?: 'image';
  name: string;
  cutAt: string;
  input: ImageInputSpec;
  includeRawInput?: boolean;
  /** When given, the model file must have this SHA-256. */
  sha256?: string;
  /** When given, the cut must give this many features. */
  dims?: number;
  /** Providers for the one probe run that measures the features. @default ['cpu'] */
  executionProviders?: readonly ExecutionProvider[];
}

/** An image backbone, ready to embed and to be grafted onto. */
export type ImageBackbone = DenseBackbone<ImageInput> & { readonly config: ImageBackboneConfig };

// The opset of the exported Graft models: the backbone graph is raised to it so a head can be appended.
const GRAPH_OPSET = 17;

/**
 * Loads an image backbone from the original model's bytes: cuts the network at `cutAt` (BACKBONE_NOT_FOUND with
 * candidates when the tensor does not exist), frees the batch dimension, raises the opset to 17, optionally
 * concatenates the flattened input pixels, and measures `dims` with one ONNX Runtime run. The graph's one output
 * is `features` [N, dims]; its one input is `input.name` [N, channels, height, width].
 */
export async function loadImageBackbone(
  modelBytes: Uint8Array,
  options: ImageBackboneOptions,
): Promise<ImageBackbone> {
  const { name, cutAt, input, includeRawInput = false, executionProviders = ['cpu'] } = options;
  const sha256 = createHash('sha256').update(modelBytes).digest('hex');
  if (options.sha256 !== undefined && options.sha256 !== sha256) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Backbone "${name}": the model file has SHA-256 ${sha256}, the configuration expects ${options.sha256}.`,
    );
  }
  // Validate everything but dims first, so a bad spec fails before any graph work.
  const draft = parseImageBackboneConfig({
    kind: 'image',
    name,
    dims: 1,
    cutAt,
    input,
    ...(includeRawInput ? { includeRawInput } : {}),
    sha256,
  });
  const { channels, height, width } = draft.input;
  checkModelInput(loadModel(modelBytes), draft);
  const rawName = 'image.cut_features';
  const cut = await cutAtTensor(modelBytes, cutAt, {
    outputName: includeRawInput ? rawName : FEATURES_OUTPUT,
    opset: GRAPH_OPSET,
    inputShapes: { [input.name]: [channels, height, width] },
    executionProviders,
  });
  let graph = cut.model;
  let dims = cut.dims;
  if (cut.inputs.length !== 1) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Backbone "${name}": the features at "${cutAt}" need ${cut.inputs.length} inputs (${cut.inputs.map((i) => i.name).join(', ')}); an image backbone feeds exactly one.`,
    );
  }
  if (includeRawInput) {
    dims += channels * height * width;
    graph = concatRawInput(graph, input.name, rawName, dims);
    // One more probe run proves the concat is well formed before anything is trained on it.
    const shapes = await inferOutputShapes(graph, {
      inputShapes: { [input.name]: [channels, height, width] },
      executionProviders,
    });
    const measured = shapes[FEATURES_OUTPUT] ?? [];
    if (measured.length !== 1 || measured[0] !== dims) {
      throw new GraftError(
        'INTERNAL',
        `Backbone "${name}": features + raw input should be [N, ${dims}]; ONNX Runtime gives [N, ${measured.join(', ')}].`,
      );
    }
  }
  if (options.dims !== undefined && options.dims !== dims) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Backbone "${name}": cutting at "${cutAt}" gives ${dims} features; the configuration says ${options.dims}.`,
    );
  }
  const config: ImageBackboneConfig = { ...draft, dims };
  const prepare = createImagePreparer(config.input);
  return { config, dims, graph, prepare };
}

/** Checks that the model has the named input and that its fixed dims agree with the spec (NCHW). */
function checkModelInput(model: ModelProto, config: ImageBackboneConfig): void {
  const { name, channels, height, width } = config.input;
  const inputs = dataInputs(model);
  const found = inputs.find((i) => i.name === name);
  if (!found) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `Backbone "${config.name}": the model has no input "${name}"; its inputs are ${inputs.map((i) => JSON.stringify(i.name)).join(', ')}.`,
    );
  }
  const dims = (found.type?.tensorType?.shape?.dim ?? []).map((d) =>
    d.dimParam ? undefined : toNumber(d.dimValue) || undefined,
  );
  const expected = [undefined, channels, height, width];
  const clash =
    dims.length > 0 &&
    (dims.length !== 4 || expected.some((e, i) => e !== undefined && dims[i] !== undefined && dims[i] !== e));
  if (clash) {
    const shown = dims.map((d) => d ?? '?').join(', ');
    throw new GraftError(
      'INVALID_OPTIONS',
      `Backbone "${config.name}": input "${name}" is [${shown}]; the spec says [N, ${channels}, ${height}, ${width}] (NCHW).`,
    );
  }
}

/** Appends Flatten(pixels) and Concat(features, pixels) so `features` = [cut features | preprocessed pixels]. */
function concatRawInput(
  graphBytes: Uint8Array,
  inputName: string,
  cutOutput: string,
  dims: number,
): Uint8Array {
  const model = loadModel(graphBytes);
  const pixels = uniqueName(model, 'image.pixels');
  model.graph?.node?.push(
    {
      opType: 'Flatten',
      name: uniqueName(model, 'image.flatten_pixels'),
      input: [inputName],
      output: [pixels],
      attribute: [{ name: 'axis', type: AttributeType.INT, i: 1 }],
    },
    {
      opType: 'Concat',
      name: uniqueName(model, 'image.concat_pixels'),
      input: [cutOutput, pixels],
      output: [FEATURES_OUTPUT],
      attribute: [{ name: 'axis', type: AttributeType.INT, i: 1 }],
    },
  );
  setOutputs(model, [valueInfo(FEATURES_OUTPUT, ['N', dims])]);
  return saveModel(model);
}
