import { GraftError } from '../errors.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** An image sent as base64 (standard alphabet, optional data: URL prefix) -> its bytes; BAD_REQUEST otherwise. */
export function decodeBase64Image(value: string, where: string): Uint8Array {
  const payload = value.replace(/^data:image\/[a-z+.-]+;base64,/i, '').replace(/\s+/g, '');
  if (payload.length === 0 || payload.length % 4 === 1 || !BASE64.test(payload)) {
    throw new GraftError(
      'BAD_REQUEST',
      `${where} is not base64: send the PNG or JPEG file's bytes base64-encoded.`,
    );
  }
  return new Uint8Array(Buffer.from(payload, 'base64'));
}
