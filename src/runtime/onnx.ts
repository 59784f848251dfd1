// The one module in the project that imports onnxruntime-node: everything else sees OnnxSession.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

/** Execution providers we run on: CUDA in the GPU container, CPU everywhere (and as the fallback). */
export type ExecutionProvider = 'cpu' | 'cuda';

export interface OnnxSessionOptions {
  /**
   * Tried in order by ONNX Runtime; nodes a provider cannot run fall to the next one.
   * @default ['cpu']
   */
  readonly executionProviders?: readonly ExecutionProvider[];
  /** Threads inside one operator; ONNX Runtime picks (one per physical core) when absent. */
  readonly intraOpNumThreads?: number;
}

/** A named input; int64 data is a `BigInt64Array`, as ONNX Runtime wants it. */
export type InputTensor =
  | { readonly type: 'float32'; readonly data: Float32Array; readonly dims: readonly number[] }
  | { readonly type: 'int64'; readonly data: BigInt64Array; readonly dims: readonly number[] };

export interface OutputTensor {
  readonly type: string;
  readonly data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | unknown[];
  readonly dims: readonly number[];
}

/** A loaded model with an explicit lifecycle: `create`, `run` any number of times, `dispose` once. */
export class OnnxSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  #session: ort.InferenceSession | undefined;

  private constructor(session: ort.InferenceSession) {
    this.#session = session;
    this.inputNames = session.inputNames;
    this.outputNames = session.outputNames;
  }

  /** Loads a model from its bytes or from a file path. */
  static async create(model: Uint8Array | string, options: OnnxSessionOptions = {}): Promise<OnnxSession> {
    const { executionProviders = ['cpu'], intraOpNumThreads } = options;
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders,
      graphOptimizationLevel: 'all',
      ...(intraOpNumThreads === undefined ? {} : { intraOpNumThreads }),
    };
    const session =
      typeof model === 'string'
        ? await ort.InferenceSession.create(model, sessionOptions)
        : await ort.InferenceSession.create(model, sessionOptions);
    return new OnnxSession(session);
  }

  /** Runs the model; returns the requested outputs (all of them when `outputNames` is absent). */
  async run(
    inputs: Readonly<Record<string, InputTensor>>,
    outputNames?: readonly string[],
  ): Promise<Record<string, OutputTensor>> {
    const session = this.#session;
    if (!session) throw new Error('OnnxSession.run called after dispose().');
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, input] of Object.entries(inputs)) {
      feeds[name] =
        input.type === 'float32'
          ? new ort.Tensor('float32', input.data, input.dims)
          : new ort.Tensor('int64', input.data, input.dims);
    }
    const results = outputNames ? await session.run(feeds, outputNames) : await session.run(feeds);
    const outputs: Record<string, OutputTensor> = {};
    for (const [name, tensor] of Object.entries(results)) {
      outputs[name] = { type: tensor.type, data: tensor.data as OutputTensor['data'], dims: tensor.dims };
    }
    return outputs;
  }

  /** Releases the native session; safe to call twice. */
  async dispose(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    await session?.release();
  }
}

const memo = new Map<string, Promise<unknown>>();

/**
 * Shares one load per key: concurrent callers get the same promise, and a load that fails is dropped from
 * the cache so the next call tries again. The cache is the only module-level state.
 */
export function memoize<T>(key: string, factory: () => Promise<T>): Promise<T> {
  const cached = memo.get(key);
  if (cached) return cached as Promise<T>;
  const promise = factory();
  memo.set(key, promise);
  promise.catch(() => {
    if (memo.get(key) === promise) memo.delete(key);
  });
  return promise;
}

/** Drops one key (or every key) from the `memoize` cache; disposing what it held is the caller's job. */
export function forget(key?: string): void {
  if (key === undefined) memo.clear();
  else memo.delete(key);
}

// The smallest model there is (Identity), to see whether a provider can run anything here.
const PROBE_MODEL = Uint8Array.from(
  Buffer.from(
    'CAgSBWdyYWZ0OjsKEAoBeBIBeSIISWRlbnRpdHkSBXByb2JlWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQEQ==',
    'base64',
  ),
);

/**
 * The execution providers that work on this machine, best first: ['cuda', 'cpu'] when a CUDA session can be
 * created (the GPU container), else ['cpu']. Probed once per process.
 */
export function availableExecutionProviders(): Promise<ExecutionProvider[]> {
  return memoize('runtime:execution-providers', async () => {
    // onnxruntime-node loads the CUDA provider from beside its binding; without its shared library (the CPU-only
    // install) there is nothing to probe, and the probe would log ONNX Runtime's load error.
    if (!existsSync(providersLibrary())) return ['cpu'] as ExecutionProvider[];
    try {
      const session = await ort.InferenceSession.create(PROBE_MODEL, {
        executionProviders: ['cuda'],
        logSeverityLevel: 4,
      });
      await session.release();
      return ['cuda', 'cpu'] as ExecutionProvider[];
    } catch {
      return ['cpu'] as ExecutionProvider[];
    }
  });
}

/** Where onnxruntime-node looks for its execution-provider bridge (`bin/napi-v6/{platform}/{arch}/`). */
function providersLibrary(): string {
  const main = createRequire(import.meta.url).resolve('onnxruntime-node');
  const library =
    process.platform === 'win32' ? 'onnxruntime_providers_shared.dll' : 'libonnxruntime_providers_shared.so';
  return path.join(path.dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch, library);
}
