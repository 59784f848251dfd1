import { request } from 'node:http';
import { connect } from 'node:net';

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  bytes: number;
}

/**
 * One HTTP request sent exactly as given (no URL normalisation: `..` segments and odd bytes reach the server),
 * over a fresh connection; rejects when no answer comes within `timeoutMs`.
 */
export function rawRequest(
  baseUrl: string,
  {
    method = 'GET',
    path,
    headers = {},
    body,
    timeoutMs = 15_000,
  }: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Uint8Array | AsyncIterable<Uint8Array>;
    timeoutMs?: number;
  },
): Promise<RawAnswer> {
  const url = new URL(baseUrl);
  // Node's client frames no body of a DELETE (or GET) unless told its length: say it, as any client would.
  if ((typeof body === 'string' || body instanceof Uint8Array) && !('content-length' in headers)) {
    headers = { ...headers, 'content-length': String(Buffer.byteLength(body)) };
  }
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, agent: false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: any;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, bytes: text.length });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () =>
      req.destroy(new Error(`${method} ${path.slice(0, 80)}: no answer in ${timeoutMs} ms`)),
    );
    req.on('error', (err) => {
      // The server may answer (413) and close before the whole body is sent: the answer already resolved.
      reject(err);
    });
    if (body === undefined || typeof body === 'string' || body instanceof Uint8Array) {
      req.end(body);
    } else {
      (async () => {
        for await (const chunk of body) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        req.end();
      })().catch((err) => req.destroy(err));
    }
  });
}

/** Sends raw bytes on a TCP connection and resolves with the first line the server answers (its status line). */
export function rawSocket(baseUrl: string, bytes: string | Uint8Array, timeoutMs = 5_000): Promise<string> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to raw bytes in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(received.slice(0, received.indexOf('\r\n')));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received.split('\r\n')[0] ?? '');
    });
    socket.write(bytes);
  });
}
