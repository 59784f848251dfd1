import { parseArgs } from 'node:util';

export const TEXT_DATASETS = ['banking77', 'trec', 'sst2', 'sms-spam'] as const;
export const IMAGE_DATASETS = ['fashion-mnist'] as const;
export const ALL_DATASETS: readonly string[] = [...TEXT_DATASETS, ...IMAGE_DATASETS];
export const STRATEGIES = ['auto', 'zero-shot', 'centroid', 'logistic', 'mlp'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface EvalOptions {
  /** Datasets to evaluate, in the order given; all of them when none is named. */
  datasets: string[];
  /** Text backbone (a registered name, or the name to register `backboneDir` / `backboneHub` under). */
  backbone: string;
  /** A local sentence-transformer directory to register as the text backbone. */
  backboneDir: string | undefined;
  /** A Hugging Face Hub repository to register as the text backbone (needs the Hub or a mirror). */
  backboneHub: string | undefined;
  /** The head strategy of the main runs; undefined = `auto` for text, `logistic` for the image backbone grid. */
  strategy: Strategy | undefined;
  /** Labelled examples per class of the main runs (stratified, seeded); undefined = all rows. */
  shots: number | undefined;
  /** Draws (seeded subsamples) averaged for each few-shot figure. */
  draws: number;
  quick: boolean;
  curve: boolean;
  seed: number;
  help: boolean;
}

export const USAGE = `Usage: npm run eval -- [options]

Runs the real job path of a local Graft (upload -> job -> model -> predict over HTTP) on the datasets in
../shared/datasets and writes eval/results.json and eval/figures/<dataset>.svg.

Options:
  --dataset NAME        ${ALL_DATASETS.join(' | ')} (repeatable, or a comma list; default all)
  --backbone NAME       text backbone (default hash-ngrams); with --backbone-dir/--backbone-hub, the name to
                        register it under (default text-local)
  --backbone-dir DIR    register a local sentence-transformer directory (onnx/model.onnx + tokenizer.json)
  --backbone-hub REPO   register a Hugging Face Hub repository (honours HF_ENDPOINT, HF_HUB_OFFLINE)
  --strategy S          ${STRATEGIES.join(' | ')}: the head of the main runs (default auto for text,
                        logistic for the Fashion-MNIST backbone grid); skips the all-strategies comparison
  --shots N             N labelled examples per class (stratified, seeded) instead of all rows
  --draws K             seeded draws averaged per few-shot figure (default 3; 1 with --quick)
  --quick               small subsets and one draw: a smoke run of every code path in a few minutes
  --no-curve            skip the learning curves
  --seed N              base seed of every subsample (default 1)
  -h, --help            this text
`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function positiveInteger(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer of at least ${min}, got "${value}".`);
  }
  return n;
}

/** Parses the command line of `npm run eval`; throws UsageError saying what is wrong. */
export function parseEvalArgs(argv: readonly string[]): EvalOptions {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values } = parsed;
  const datasets = (values.dataset ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  const unknown = datasets.filter((d) => !ALL_DATASETS.includes(d));
  if (unknown.length > 0) {
    throw new UsageError(`Unknown dataset(s) ${unknown.join(', ')}; choose from ${ALL_DATASETS.join(', ')}.`);
  }
  const strategy = values.strategy;
  if (strategy !== undefined && !(STRATEGIES as readonly string[]).includes(strategy)) {
    throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}".`);
  }
  if (values['backbone-dir'] !== undefined && values['backbone-hub'] !== undefined) {
    throw new UsageError('Give --backbone-dir or --backbone-hub, not both.');
  }
  const registers = values['backbone-dir'] !== undefined || values['backbone-hub'] !== undefined;
  const backbone = values.backbone ?? (registers ? 'text-local' : 'hash-ngrams');
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(backbone)) {
    throw new UsageError(`--backbone "${backbone}" is not a valid name ([a-z0-9][a-z0-9-]{0,62}).`);
  }
  if (registers && backbone === 'hash-ngrams') {
    throw new UsageError('hash-ngrams is built in: register the directory under another --backbone name.');
  }
  return {
    datasets: datasets.length > 0 ? [...new Set(datasets)] : [...ALL_DATASETS],
    backbone,
    backboneDir: values['backbone-dir'],
    backboneHub: values['backbone-hub'],
    strategy: strategy as Strategy | undefined,
    shots: positiveInteger('shots', values.shots),
    draws: positiveInteger('draws', values.draws) ?? (values.quick ? 1 : 3),
    quick: values.quick ?? false,
    curve: !(values['no-curve'] ?? false),
    seed: positiveInteger('seed', values.seed, 0) ?? 1,
    help: values.help ?? false,
  };
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      dataset: { type: 'string', multiple: true },
      backbone: { type: 'string' },
      'backbone-dir': { type: 'string' },
      'backbone-hub': { type: 'string' },
      strategy: { type: 'string' },
      shots: { type: 'string' },
      draws: { type: 'string' },
      quick: { type: 'boolean' },
      'no-curve': { type: 'boolean' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
