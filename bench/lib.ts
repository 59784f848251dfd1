// Measuring helpers for `npm run bench`: timed loops, medians with their spread, the result table, .npy files.
import { writeFile } from 'node:fs/promises';
import autocannon from 'autocannon';

/** A figure measured several times: the median, and the smallest and largest run. */
export interface Measured {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function measured(runs: number[]): Measured {
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { median, min: sorted[0] ?? 0, max: sorted.at(-1) ?? 0, runs };
}

export function percentile(sortedAscending: number[], p: number): number {
  if (sortedAscending.length === 0) return 0;
  const index = Math.min(sortedAscending.length - 1, Math.ceil((p / 100) * sortedAscending.length) - 1);
  return sortedAscending[Math.max(0, index)] ?? 0;
}

export interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/**
 * Runs `call` from `concurrency` loops for `durationMs`; every call is one request. Latencies are taken per call;
 * throughput is completed calls over the elapsed time.
 */
export async function closedLoop(
  call: () => Promise<unknown>,
  { concurrency, durationMs }: { concurrency: number; durationMs: number },
): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await call();
        } catch {
          errors++;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requestsPerSecond: latencies.length / elapsed,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
  };
}

/**
 * `connections` clients POSTing the same JSON body to `url` for `durationMs`, each waiting for its answer before
 * sending again: autocannon, the load generator of every HTTP figure.
 */
export async function postLoad(
  url: string,
  apiKey: string,
  body: string,
  { connections, durationMs }: { connections: number; durationMs: number },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body,
    connections,
    duration: durationMs / 1000,
  });
  return {
    requestsPerSecond: result.requests.total / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
  };
}

/** The repeats of one load run: each figure a median over them, and their errors summed. */
export interface RepeatedLoad {
  requestsPerSecond: Measured;
  p50Ms: Measured;
  p99Ms: Measured;
  errors: number;
}

/**
 * Measures several contenders the same way, taking turns (A B C A B C ...) after one warm-up each, so that
 * whatever else the machine is doing meanwhile weighs on all of them alike.
 */
export async function interleaved<K extends string>(
  contenders: Record<K, (durationMs: number) => Promise<LoadResult>>,
  { repeats, durationMs, warmUpMs }: { repeats: number; durationMs: number; warmUpMs: number },
  onRun: (name: K, repeat: number) => void = () => {},
): Promise<Record<K, RepeatedLoad>> {
  const names = Object.keys(contenders) as K[];
  const results = new Map<K, LoadResult[]>(names.map((name) => [name, []]));
  for (const name of names) await contenders[name](warmUpMs);
  for (let repeat = 0; repeat < repeats; repeat++) {
    for (const name of names) {
      onRun(name, repeat);
      results.get(name)?.push(await contenders[name](durationMs));
    }
  }
  return Object.fromEntries(
    names.map((name) => {
      const runs = results.get(name) ?? [];
      return [
        name,
        {
          requestsPerSecond: measured(runs.map((r) => r.requestsPerSecond)),
          p50Ms: measured(runs.map((r) => r.p50Ms)),
          p99Ms: measured(runs.map((r) => r.p99Ms)),
          errors: runs.reduce((sum, r) => sum + r.errors, 0),
        },
      ];
    }),
  ) as Record<K, RepeatedLoad>;
}

/** One line of the result table: a figure, what it is compared with (measured in the same run), the target. */
export interface Row {
  item: string;
  what: string;
  value: Measured | number | string;
  unit: string;
  reference?: { what: string; value: Measured | number | string };
  /** value / reference. */
  ratio?: number;
  target?: string;
  pass?: boolean;
  note?: string;
}

const num = (x: number) =>
  Math.abs(x) >= 1000
    ? x.toFixed(0)
    : Math.abs(x) >= 10
      ? x.toFixed(1)
      : Math.abs(x) >= 1
        ? x.toFixed(2)
        : x.toFixed(3);

export function show(value: Measured | number | string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return num(value);
  return value.runs.length > 1
    ? `${num(value.median)} (${num(value.min)}–${num(value.max)})`
    : num(value.median);
}

export const medianOf = (value: Measured | number) => (typeof value === 'number' ? value : value.median);

/** The table printed at the end of the bench. */
export function table(rows: Row[]): string {
  const head = [
    'item',
    'what',
    'value (median, min–max)',
    'unit',
    'reference (same run)',
    'ratio',
    'target',
    '',
  ];
  const lines = rows.map((r) => [
    r.item,
    r.what,
    show(r.value),
    r.unit,
    r.reference ? `${r.reference.what}: ${show(r.reference.value)}` : '',
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`,
    r.target ?? '',
    r.pass === undefined ? (r.note ? 'note' : '') : r.pass ? 'ok' : 'MISS',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const format = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const notes = rows.filter((r) => r.note).map((r) => `  [${r.item}] ${r.note}`);
  return [format(head), format(widths.map((w) => '-'.repeat(w))), ...lines.map(format), '', ...notes].join(
    '\n',
  );
}

/** Writes a 1-d array as a NumPy .npy file (format 1.0), little-endian. */
export async function writeNpy(file: string, data: Float32Array | Int32Array | BigInt64Array): Promise<void> {
  const descr = data instanceof Float32Array ? '<f4' : data instanceof Int32Array ? '<i4' : '<i8';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${data.length},), }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64);
  header += '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  await writeFile(
    file,
    Buffer.concat([
      prefix,
      Buffer.from(header, 'latin1'),
      Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    ]),
  );
}
