// Fashion-MNIST on the mnist-8 CNN: its 256-d features against two controls measured in the same run (a head on
// the raw pixels, and the same network with its weights shuffled), plus "features + raw input", at several
// labelled sizes; `auto` against the best of them; augmentation on and off.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { shuffleWeights } from '../src/engine/onnx-graph.js';
import type { Strategy } from './args.js';
import type { ApiClient } from './client.js';
import type { DatasetSplits } from './datasets.js';
import { chosen, pct, seconds, shotsLabel, table } from './format.js';
import { formatReferenceAccuracy, REFERENCES } from './references.js';
import {
  type Aggregate,
  aggregate,
  mostAccurate,
  type Runner,
  type RunSpec,
  withoutConfusion,
} from './runner.js';
import { deriveSeed } from './sample.js';
import { type CurveSeries, confusionPanel, figureSvg, learningCurvePanel, type Panel } from './svg.js';
import { type DatasetPlan, dedupe, drawsFor, type PlanOptions } from './text.js';

/** mnist-8's input and the tensor before its last MatMul (256 features); see ../shared/datasets/SOURCES.md. */
export const MNIST8 = {
  file: 'models/mnist-8/mnist-8.onnx',
  cutAt: 'Pooling160_Output_0_reshape0',
  // Fashion-MNIST is light on dark like MNIST's digits, so no `invert` (see loadFashionMnistDataset).
  input: { name: 'Input3', width: 28, height: 28, channels: 1, scale: 1 / 255, mean: [0], std: [1] },
} as const;

export const BACKBONES = {
  features: 'mnist8',
  pixels: 'mnist8-pixels',
  both: 'mnist8-plus-pixels',
  shuffled: (i: number) => `mnist8-shuffled-${i}`,
} as const;

const DISPLAY: Record<Kind, string> = {
  features: 'mnist-8 features (256)',
  pixels: 'raw pixels (784)',
  both: 'features + raw pixels (1040)',
  shuffled: 'shuffled mnist-8 weights (256)',
};

type Kind = 'features' | 'pixels' | 'both' | 'shuffled';

/** How many shuffled copies of the network the control averages (the control varies with the seed). */
export const SHUFFLE_COPIES = 3;

/** The labelled sizes of the full run (examples per class); 'all' = the 60,000 training images. */
export const FULL_SIZES: readonly (number | 'all')[] = [10, 100, 1000, 'all'];
export const QUICK_SIZES: readonly (number | 'all')[] = [10, 100];
const AUGMENT_SIZES = [10, 100];
const TARGET_SIZE = 100;

/** Seeds of the shuffled-weights copies, derived from the base seed. */
export const shuffleSeeds = (base: number) =>
  Array.from({ length: SHUFFLE_COPIES }, (_, i) => deriveSeed(base, 'shuffle-weights', i));

/** Registers the four kinds of backbone through the API (shuffled copies from temporary files). */
export async function registerFashionBackbones(
  api: ApiClient,
  sharedDir: string,
  tempDir: string,
  seeds: readonly number[],
): Promise<void> {
  const modelPath = path.join(sharedDir, MNIST8.file);
  const input = { ...MNIST8.input, mean: [...MNIST8.input.mean], std: [...MNIST8.input.std] };
  const register = (name: string, file: string, extra: Record<string, unknown>) =>
    api.put(`/v1/backbones/${name}`, { kind: 'image', source: { dir: file }, input, ...extra });
  await register(BACKBONES.features, modelPath, { cutAt: MNIST8.cutAt });
  await register(BACKBONES.pixels, modelPath, { cutAt: MNIST8.input.name });
  await register(BACKBONES.both, modelPath, { cutAt: MNIST8.cutAt, includeRawInput: true });
  const bytes = new Uint8Array(await readFile(modelPath));
  for (const [i, seed] of seeds.entries()) {
    const file = path.join(tempDir, `mnist-8-shuffled-${seed}.onnx`);
    await writeFile(file, shuffleWeights(bytes, seed));
    await register(BACKBONES.shuffled(i), file, { cutAt: MNIST8.cutAt });
  }
}

export function planFashion(data: DatasetSplits, o: PlanOptions & { seed: number }): DatasetPlan {
  const dataset = data.name;
  const grid: Strategy = o.strategy ?? 'logistic';
  const sizes: (number | 'all')[] =
    o.shots !== undefined ? [o.shots] : o.curve ? [...(o.quick ? QUICK_SIZES : FULL_SIZES)] : [TARGET_SIZE];
  const autoSize = sizes.includes(TARGET_SIZE) ? TARGET_SIZE : sizes[0];
  const spec = (backbone: string, strategy: Strategy, shots: number | 'all', draw: number, augment = false) =>
    ({ dataset, backbone, strategy, shots, draw, ...(augment ? { augment: true } : {}) }) as RunSpec;

  type Cell = { shots: number | 'all'; draws: number; specs: Record<Kind, RunSpec[]> };
  const cells: Cell[] = [];
  const augmentation: { shots: number | 'all'; without: RunSpec[]; with: RunSpec[] }[] = [];
  const autoRuns: Partial<Record<Kind, RunSpec[]>> = {};
  const specs: RunSpec[] = [];
  for (const shots of sizes) {
    const draws = drawsFor(shots, o.draws);
    const each = (backbone: string, strategy = grid, augment = false) =>
      Array.from({ length: draws }, (_, d) => spec(backbone, strategy, shots, d, augment));
    const shuffled = Array.from({ length: Math.max(draws, SHUFFLE_COPIES) }, (_, j) =>
      spec(BACKBONES.shuffled(j % SHUFFLE_COPIES), grid, shots, j % draws),
    );
    const cell: Cell = {
      shots,
      draws,
      specs: {
        features: each(BACKBONES.features),
        pixels: each(BACKBONES.pixels),
        both: each(BACKBONES.both),
        shuffled,
      },
    };
    cells.push(cell);
    specs.push(...cell.specs.features, ...cell.specs.pixels, ...cell.specs.both, ...shuffled);
    if (typeof shots === 'number' && AUGMENT_SIZES.includes(shots)) {
      const withAugment = each(BACKBONES.features, grid, true);
      augmentation.push({ shots, without: cell.specs.features, with: withAugment });
      specs.push(...withAugment);
    }
    if (shots === autoSize && grid !== 'auto') {
      for (const kind of ['features', 'pixels', 'both'] as const) {
        autoRuns[kind] = each(BACKBONES[kind], 'auto');
        specs.push(...autoRuns[kind]);
      }
    }
  }

  return {
    dataset,
    specs: dedupe(specs),
    report(runner) {
      const get = (list: readonly RunSpec[]) => aggregate(list.flatMap((s) => runner.find(s) ?? []));
      const lines: string[] = [];
      const kinds: Kind[] = ['features', 'shuffled', 'pixels', 'both'];
      const measured = cells.map((cell) => ({
        shots: cell.shots,
        draws: cell.draws,
        byKind: Object.fromEntries(kinds.map((k) => [k, get(cell.specs[k])])) as Record<Kind, Aggregate>,
      }));
      lines.push(
        `Backbone grid: head = ${grid}; ${data.test.labels.length} test images; mean ± sd over draws` +
          ` (shuffled: over ${SHUFFLE_COPIES} shuffled copies, seeds ${shuffleSeeds(o.seed).join(', ')})`,
        table(
          ['per class', 'train rows', 'draws', ...kinds.map((k) => DISPLAY[k])],
          measured.map((m) => [
            shotsLabel(m.shots),
            String(Math.round(m.byKind.features.trainRows)),
            String(m.draws),
            ...kinds.map((k) => pct(m.byKind[k])),
          ]),
        ),
        '',
        'macro-F1 %:',
        table(
          ['per class', ...kinds.map((k) => DISPLAY[k])],
          measured.map((m) => [shotsLabel(m.shots), ...kinds.map((k) => pct(m.byKind[k], 'macroF1'))]),
        ),
        '',
        'Job time, card totalMs / client wall (s), mean per job:',
        table(
          ['per class', ...kinds.map((k) => DISPLAY[k])],
          measured.map((m) => [
            shotsLabel(m.shots),
            ...kinds.map((k) => `${seconds(m.byKind[k].jobMs.card)} / ${seconds(m.byKind[k].jobMs.wall)}`),
          ]),
        ),
      );
      for (const m of measured) {
        for (const k of kinds) for (const e of m.byKind[k].errors) lines.push(`  ${DISPLAY[k]} error: ${e}`);
      }
      const json: Record<string, unknown> = {
        backbones: { ...BACKBONES, shuffled: shuffleSeeds(o.seed).map((_, i) => BACKBONES.shuffled(i)) },
        cutAt: MNIST8.cutAt,
        input: MNIST8.input,
        shuffleSeeds: shuffleSeeds(o.seed),
        gridStrategy: grid,
        trainRows: data.train.labels.length,
        testRows: data.test.labels.length,
        grid: measured.map((m) => ({
          shots: m.shots,
          draws: m.draws,
          ...Object.fromEntries(kinds.map((k) => [k, withoutConfusion(m.byKind[k])])),
        })),
        references: REFERENCES[dataset] ?? [],
      };
      lines.push(
        '',
        'References:',
        ...(REFERENCES[dataset] ?? []).map(
          (r) => `  ${r.method}: ${formatReferenceAccuracy(r)}${r.note ? ` (${r.note})` : ''}`,
        ),
      );

      const at100 = measured.find((m) => m.shots === TARGET_SIZE);
      if (at100 && at100.byKind.features.succeeded > 0 && at100.byKind.shuffled.succeeded > 0) {
        const margin = at100.byKind.features.accuracy.mean - at100.byKind.shuffled.accuracy.mean;
        json.pretrainedVsShuffled = { shots: TARGET_SIZE, margin, target: 4, met: margin >= 4 };
        lines.push(
          '',
          `Target: pretrained >= shuffled + 4 points at ${TARGET_SIZE}/class: ${at100.byKind.features.accuracy.mean.toFixed(2)}` +
            ` - ${at100.byKind.shuffled.accuracy.mean.toFixed(2)} = ${margin.toFixed(2)} -> ${margin >= 4 ? 'met' : 'NOT met'}`,
        );
      }

      if (autoSize !== undefined && Object.keys(autoRuns).length > 0) {
        const cell = measured.find((m) => m.shots === autoSize);
        const best = mostAccurate(['features', 'pixels', 'both'] as const, (k) => cell?.byKind[k]);
        const autos = Object.fromEntries(
          Object.entries(autoRuns).map(([k, list]) => [k, get(list ?? [])]),
        ) as Partial<Record<Kind, Aggregate>>;
        lines.push(
          '',
          `auto at ${shotsLabel(autoSize)} (mean of ${drawsFor(autoSize, o.draws)} draws) against ${grid} on each backbone:`,
          table(
            ['backbone', `${grid} %`, 'auto %', 'auto macro-F1 %', 'auto chose'],
            (['features', 'pixels', 'both'] as const).map((k) => [
              DISPLAY[k],
              pct(cell?.byKind[k]),
              pct(autos[k]),
              pct(autos[k], 'macroF1'),
              chosen(autos[k]),
            ]),
          ),
        );
        const bestAcc = best ? (cell?.byKind[best].accuracy.mean ?? Number.NaN) : Number.NaN;
        const autoBoth = autos.both;
        const bestAuto = Math.max(
          ...Object.values(autos).flatMap((a) => (a && a.succeeded > 0 ? [a.accuracy.mean] : [])),
        );
        if (best && autoBoth && autoBoth.succeeded > 0) {
          const gap = bestAcc - autoBoth.accuracy.mean;
          lines.push(
            `Target: auto (on features + raw input) within 1 point of the best of the three (${DISPLAY[best]}, ${bestAcc.toFixed(2)}):` +
              ` ${autoBoth.accuracy.mean.toFixed(2)}, gap ${gap.toFixed(2)} -> ${gap <= 1 ? 'met' : 'NOT met'}` +
              `; best auto of the three backbones ${bestAuto.toFixed(2)}`,
          );
          json.auto = {
            shots: autoSize,
            bestOfThree: { backbone: best, accuracy: bestAcc },
            auto: Object.fromEntries(Object.entries(autos).map(([k, a]) => [k, a && withoutConfusion(a)])),
            gapPoints: gap,
            withinOnePoint: gap <= 1,
          };
        }
      }

      if (augmentation.length > 0) {
        const rows = augmentation.map((a) => {
          const off = get(a.without);
          const on = get(a.with);
          const diff = on.accuracy.mean - off.accuracy.mean;
          return { shots: a.shots, off, on, diff };
        });
        lines.push(
          '',
          `Augmentation (training.augment = platform defaults, ${DISPLAY.features} + ${grid}, same draws):`,
          table(
            ['per class', 'without %', 'with %', 'difference (points)', 'macro-F1 without', 'macro-F1 with'],
            rows.map((r) => [
              shotsLabel(r.shots),
              pct(r.off),
              pct(r.on),
              Number.isFinite(r.diff) ? `${r.diff >= 0 ? '+' : ''}${r.diff.toFixed(2)}` : '—',
              pct(r.off, 'macroF1'),
              pct(r.on, 'macroF1'),
            ]),
          ),
        );
        for (const r of rows) for (const e of r.on.errors) lines.push(`  augmented error: ${e}`);
        const settings = augmentSettings(augmentation, runner);
        if (settings) lines.push(`augment settings (from the task): ${JSON.stringify(settings)}`);
        json.augmentation = rows.map((r) => ({
          shots: r.shots,
          without: withoutConfusion(r.off),
          with: withoutConfusion(r.on),
          differencePoints: r.diff,
          settings,
        }));
      }

      // The figure: confusion matrix of the pretrained features at the largest size, and the grid as curves.
      const largest = measured[measured.length - 1];
      const panels: Panel[] = [];
      const main = largest?.byKind.features;
      if (largest && main?.confusion && main.labels) {
        panels.push(
          confusionPanel(main.confusion, main.labels, {
            title: 'Confusion matrix (test set)',
            subtitle: `${DISPLAY.features} + ${grid}, ${shotsLabel(largest.shots)}; accuracy ${main.accuracy.mean.toFixed(2)}%${largest.draws > 1 ? ` (${largest.draws} draws summed)` : ''}`,
          }),
        );
        json.main = { backbone: BACKBONES.features, shots: largest.shots, ...main };
      }
      const perClassAll = data.train.labels.length / Math.max(1, data.train.classes.length);
      const series: CurveSeries[] = kinds.map((k) => ({
        name: DISPLAY[k],
        points: measured
          .filter((m) => m.byKind[k].succeeded > 0)
          .map((m) => ({
            x: m.shots === 'all' ? perClassAll : m.shots,
            y: m.byKind[k].accuracy.mean,
            sd: m.byKind[k].accuracy.sd,
            ...(m.shots === 'all' ? { tick: `all (${Math.round(perClassAll)})` } : {}),
          })),
      }));
      if (measured.length > 0) {
        panels.push(
          learningCurvePanel(series, {
            title: 'Learning curve',
            subtitle: `head = ${grid}; each point a real job on a stratified, seeded subsample`,
          }),
        );
      }
      const svg = figureSvg(`fashion-mnist: mnist-8 CNN features vs controls`, panels, [
        `${data.train.labels.length} training images available, ${data.test.labels.length} test images.` +
          ` Shuffled = the same network with the values inside every weight tensor permuted (seeds ${shuffleSeeds(o.seed).join(', ')}).`,
        ...(o.quick ? ['QUICK RUN: subsampled data; the figures are a smoke test, not results.'] : []),
      ]);
      const shuffledCheck = json.pretrainedVsShuffled as { met: boolean; margin: number } | undefined;
      const summary = [
        dataset,
        `${BACKBONES.features} + ${grid}, ${largest ? shotsLabel(largest.shots) : '—'}`,
        pct(main),
        pct(main, 'macroF1'),
        chosen(main),
        seconds(main?.jobMs.card),
        'small CNNs 87.6–93.2',
        shuffledCheck
          ? `vs shuffled +${shuffledCheck.margin.toFixed(1)}: ${shuffledCheck.met ? 'met' : 'NOT met'}`
          : '—',
      ];
      return { json, text: lines.join('\n'), svg, summary };
    },
  };
}

/** The augmentation settings the platform applied (read back from the first augmented task). */
function augmentSettings(augmentation: { with: RunSpec[] }[], runner: Runner): unknown {
  for (const a of augmentation) {
    for (const s of a.with) {
      const settings = runner.find(s)?.card?.augment;
      if (settings) return settings;
    }
  }
  return undefined;
}
