// Seeded subsampling for the evaluation: the same (dataset, size, draw) always gives the same rows, whichever
// backbone or strategy is trained on them, so comparisons are paired. Deliberately not src/engine/rng.ts (the same
// mulberry32 today): the rows of a draw must not move when the engine under measurement changes.

/** A seeded generator of floats in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A stable 31-bit seed from a base seed and the parts that name a draw (FNV-1a over their text). */
export function deriveSeed(base: number, ...parts: readonly (string | number)[]): number {
  let hash = 0x811c9dc5;
  for (const char of [base, ...parts].join('/')) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash & 0x7fffffff;
}

/** A shuffled copy (Fisher-Yates). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const a = out[i] as T;
    out[i] = out[j] as T;
    out[j] = a;
  }
  return out;
}

/**
 * Indices of at most `perClass` rows of each label, drawn with `seed`, returned in ascending order. A label with
 * fewer rows keeps all of them.
 */
export function stratifiedSample(labels: readonly string[], perClass: number, seed: number): number[] {
  if (!Number.isInteger(perClass) || perClass < 1) {
    throw new RangeError(`perClass must be a positive integer, got ${perClass}`);
  }
  const byLabel = new Map<string, number[]>();
  labels.forEach((label, i) => {
    const rows = byLabel.get(label);
    if (rows) rows.push(i);
    else byLabel.set(label, [i]);
  });
  const random = seededRandom(seed);
  const chosen: number[] = [];
  // Labels in sorted order, so the draw does not depend on the order rows happen to be listed in.
  for (const label of [...byLabel.keys()].sort()) {
    chosen.push(...shuffled(byLabel.get(label) ?? [], random).slice(0, perClass));
  }
  return chosen.sort((a, b) => a - b);
}

/** At most `count` row indices, spread over the labels in proportion (a seeded shuffle, then the first rows). */
export function randomSubset(total: number, count: number, seed: number): number[] {
  const all = Array.from({ length: total }, (_, i) => i);
  if (count >= total) return all;
  return shuffled(all, seededRandom(seed))
    .slice(0, count)
    .sort((a, b) => a - b);
}

/** Rows per label. */
export function countLabels(labels: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const label of labels) counts.set(label, (counts.get(label) ?? 0) + 1);
  return counts;
}
