import { PNG } from 'pngjs';

/** A grey image: `height` rows of `width` bytes. */
export interface GreyImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** Encodes a grey 8-bit image as a PNG file (colour type 0), the way a user would upload it. */
export function encodeGreyPng({ width, height, data }: GreyImage): Buffer {
  if (data.length !== width * height) {
    throw new RangeError(`a ${width}x${height} grey image needs ${width * height} bytes, got ${data.length}`);
  }
  const png = new PNG({ width, height, colorType: 0, inputColorType: 0, inputHasAlpha: false, bitDepth: 8 });
  png.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, inputHasAlpha: false, bitDepth: 8 });
}

/** The base64 of a grey PNG: the `image` field of a dataset row or a predict input. */
export function greyPngBase64(image: GreyImage): string {
  return encodeGreyPng(image).toString('base64');
}
