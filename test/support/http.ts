import { expect } from 'vitest';

type Fetch = (path: string, init?: RequestInit) => Response | Promise<Response>;

/** A tiny JSON client over either `app.request` (in-process) or `fetch` against a listening server. */
export function client(fetcher: Fetch, key?: string) {
  const call = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    const headers: Record<string, string> = {};
    if (key) headers.authorization = `Bearer ${key}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      headers['content-type'] = contentType;
    }
    const response = await fetcher(path, { method, headers, body: payload });
    const text = await response.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: response.status, body: json, headers: response.headers };
  };
  return {
    call,
    get: (path: string) => call('GET', path),
    post: (path: string, body?: unknown, contentType?: string) => call('POST', path, body, contentType),
    put: (path: string, body?: unknown) => call('PUT', path, body),
    del: (path: string) => call('DELETE', path),
    /** Polls a job until it ends. */
    async waitForJob(id: string, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { body } = await call('GET', `/v1/jobs/${id}`);
        if (['succeeded', 'failed', 'cancelled'].includes(body.status)) return body;
        if (Date.now() > deadline) throw new Error(`job ${id} did not finish: ${JSON.stringify(body)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

/** Asserts the error shape of the API contract. */
export function expectError(response: { status: number; body: any }, status: number, code: string) {
  expect(response.status, JSON.stringify(response.body)).toBe(status);
  expect(response.body.error.code).toBe(code);
  expect(typeof response.body.error.message).toBe('string');
  expect(response.body.error.message.length).toBeGreaterThan(10);
}
