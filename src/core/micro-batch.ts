import { GraftError } from '../errors.js';

export interface MicroBatchOptions {
  /**
   * How long the first request of a batch waits for others to the same model; 0 waits one turn of the event
   * loop (requests already read are grouped, none is delayed by a timer). @default 0
   */
  maxWaitMs?: number;
  /** Rows in one run; a batch that reaches it is sent at once, and a request this large runs alone. @default 64 */
  maxBatchRows?: number;
}

/** Counters for tests and the bench: how many requests were coalesced into how many runs. */
export interface MicroBatchStats {
  requests: number;
  runs: number;
  rows: number;
}

interface Pending<I, O> {
  inputs: readonly I[];
  resolve(outputs: O[]): void;
  reject(err: unknown): void;
}

interface Lane<I, O> {
  pending: Pending<I, O>[];
  rows: number;
  timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
}

/**
 * Coalesces concurrent calls for the same key (a loaded model) into one call of `run` over all their inputs,
 * and hands each caller its own rows. Requests that overlap in a long-running server then share one ONNX Runtime
 * call instead of queueing for one each: the per-call cost (reading the head's weights, the runtime's overhead) is
 * paid once per batch.
 *
 * A failed batch is split: each caller's inputs run again on their own, so an error reaches only the caller whose
 * inputs caused it.
 */
export class MicroBatcher<K, I, O> {
  readonly stats: MicroBatchStats = { requests: 0, runs: 0, rows: 0 };
  readonly #run: (key: K, inputs: I[]) => Promise<O[]>;
  readonly #maxWaitMs: number;
  readonly #maxBatchRows: number;
  readonly #lanes = new Map<K, Lane<I, O>>();

  constructor(run: (key: K, inputs: I[]) => Promise<O[]>, options: MicroBatchOptions = {}) {
    const { maxWaitMs = 0, maxBatchRows = 64 } = options;
    if (!(Number.isFinite(maxWaitMs) && maxWaitMs >= 0 && maxWaitMs <= 1000)) {
      throw new GraftError('INVALID_OPTIONS', `maxWaitMs must be from 0 to 1000, got ${maxWaitMs}.`);
    }
    if (!(Number.isInteger(maxBatchRows) && maxBatchRows >= 1)) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `maxBatchRows must be a positive integer, got ${maxBatchRows}.`,
      );
    }
    this.#run = run;
    this.#maxWaitMs = maxWaitMs;
    this.#maxBatchRows = maxBatchRows;
  }

  /** Runs `inputs` for `key`, possibly together with other callers' inputs; resolves with this caller's rows. */
  submit(key: K, inputs: readonly I[]): Promise<O[]> {
    this.stats.requests++;
    if (inputs.length === 0) return Promise.resolve([]);
    if (inputs.length >= this.#maxBatchRows) return this.#call(key, [...inputs]);
    return new Promise<O[]>((resolve, reject) => {
      const open = this.#lanes.get(key);
      // A request that would overfill the open batch sends it and starts the next one.
      if (open && open.rows + inputs.length > this.#maxBatchRows) this.#flush(key, open);
      const lane = this.#lanes.get(key) ?? { pending: [], rows: 0, timer: undefined };
      this.#lanes.set(key, lane);
      lane.pending.push({ inputs, resolve, reject });
      lane.rows += inputs.length;
      if (lane.rows >= this.#maxBatchRows) this.#flush(key, lane);
      else if (!lane.timer) {
        const flush = () => this.#flush(key, lane);
        lane.timer = this.#maxWaitMs === 0 ? setImmediate(flush) : setTimeout(flush, this.#maxWaitMs);
      }
    });
  }

  #flush(key: K, lane: Lane<I, O>) {
    if (lane.timer) {
      clearTimeout(lane.timer as NodeJS.Timeout);
      clearImmediate(lane.timer as NodeJS.Immediate);
      lane.timer = undefined;
    }
    const batch = lane.pending;
    lane.pending = [];
    lane.rows = 0;
    if (this.#lanes.get(key) === lane) this.#lanes.delete(key);
    if (batch.length === 0) return;
    void this.#runBatch(key, batch);
  }

  async #runBatch(key: K, batch: Pending<I, O>[]) {
    if (batch.length === 1) {
      const [only] = batch as [Pending<I, O>];
      await this.#call(key, [...only.inputs]).then(only.resolve, only.reject);
      return;
    }
    let outputs: O[];
    try {
      outputs = await this.#call(
        key,
        batch.flatMap((p) => p.inputs),
      );
    } catch {
      // Whose inputs failed is unknown: each caller runs alone and gets its own outcome.
      await Promise.all(batch.map((p) => this.#call(key, [...p.inputs]).then(p.resolve, p.reject)));
      return;
    }
    let offset = 0;
    for (const p of batch) {
      p.resolve(outputs.slice(offset, offset + p.inputs.length));
      offset += p.inputs.length;
    }
  }

  async #call(key: K, inputs: I[]): Promise<O[]> {
    this.stats.runs++;
    this.stats.rows += inputs.length;
    const outputs = await this.#run(key, inputs);
    if (outputs.length !== inputs.length) {
      throw new GraftError('INTERNAL', `A batch of ${inputs.length} inputs gave ${outputs.length} outputs.`);
    }
    return outputs;
  }
}
