import { IncomingMessage } from 'node:http';
import { GraftError } from '../errors.js';

// The JSON body of a request on the Node server, read from Node's own stream. The web Request that
// @hono/node-server builds when a body is first touched (a web stream over the Node one) costs about 50 µs a
// request, a fifth of a batch-1 hash prediction: the hot routes (predict, embeddings) read it here instead.

const utf8 = new TextDecoder();

/**
 * The body of `incoming` as text, decoded as `Request.text()` does (UTF-8, a leading BOM dropped), or undefined
 * when it is not a Node request whose body is still unread (Lambda, or a body already read): then the caller
 * reads the web Request. Past `maxSize` bytes, announced or sent, it fails with `tooLarge()` (the rest is read
 * and dropped by Node, so the connection can carry the answer).
 */
export async function nodeRequestBody(
  incoming: unknown,
  maxSize: number,
  tooLarge: () => Error,
): Promise<string | undefined> {
  if (!(incoming instanceof IncomingMessage) || incoming.readableDidRead) return undefined;
  return readIncoming(incoming, maxSize, tooLarge);
}

function readIncoming(incoming: IncomingMessage, maxSize: number, tooLarge: () => Error): Promise<string> {
  if (Number(incoming.headers['content-length']) > maxSize) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (err?: Error) => {
      incoming.off('data', onData).off('end', onEnd).off('error', settle).off('close', onClose);
      if (err) reject(err);
      else resolve(utf8.decode(Buffer.concat(chunks, size)));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxSize) settle(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => settle();
    const onClose = () =>
      settle(new GraftError('BAD_REQUEST', 'The request body ended before it was complete.'));
    incoming.on('data', onData).on('end', onEnd).on('error', settle).on('close', onClose);
  });
}
