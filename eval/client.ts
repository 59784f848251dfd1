// A small JSON client for the Graft HTTP API, as a user's program would call it.

/** A non-2xx answer: the request that showed it, its status and the API's error code and message. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly request: string,
    readonly status: number,
    readonly code: string,
    /** The API's own message. */
    readonly detail: string,
    readonly body: unknown,
  ) {
    super(`${request} -> ${status} ${code}: ${detail}`);
  }
}

export interface JobView {
  id: string;
  task: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  stage?: string;
  progress: number;
  modelVersion: string;
  promoted?: boolean;
  metrics?: Record<string, unknown>;
  error?: { code: string; message: string };
  events?: { at: string; stage?: string; message: string }[];
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export type ApiClient = ReturnType<typeof apiClient>;

export function apiClient(baseUrl: string, key: string) {
  async function call<T>(method: string, path: string, body?: string, contentType?: string): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${key}` };
    if (contentType) headers['content-type'] = contentType;
    const request = `${method} ${path}`;
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string } })?.error;
      throw new ApiError(
        request,
        response.status,
        error?.code ?? 'UNKNOWN',
        error?.message ?? text.slice(0, 500),
        json,
      );
    }
    return json as T;
  }
  return {
    get: <T>(path: string) => call<T>('GET', path),
    put: <T>(path: string, body: unknown) => call<T>('PUT', path, JSON.stringify(body), 'application/json'),
    post: <T>(path: string, body: unknown) => call<T>('POST', path, JSON.stringify(body), 'application/json'),
    postNdjson: <T>(path: string, body: string) => call<T>('POST', path, body, 'application/x-ndjson'),
    /** Polls a job until it ends, reporting each change of stage or progress. */
    async waitForJob(
      id: string,
      {
        timeoutMs = 3_600_000,
        intervalMs = 200,
        onUpdate,
      }: { timeoutMs?: number; intervalMs?: number; onUpdate?: (job: JobView) => void } = {},
    ): Promise<JobView> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const job = await call<JobView>('GET', `/v1/jobs/${id}`);
        onUpdate?.(job);
        if (TERMINAL.has(job.status)) return job;
        if (Date.now() > deadline) {
          throw new Error(
            `job ${id} did not finish within ${timeoutMs / 1000} s: ${job.status} ${job.stage ?? ''}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    },
  };
}
