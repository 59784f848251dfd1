/**
 * Mean cross-entropy of `softmax(logits / temperature)`: against the true labels (the NLL), or, when
 * `trueTarget` is given, against soft targets that put `trueTarget[i]` on row i's label and spread the rest
 * evenly over the other labels.
 */
export function temperatureNll(
  logits: readonly ArrayLike<number>[],
  labels: ArrayLike<number>,
  temperature: number,
  trueTarget?: ArrayLike<number>,
): number {
  if (logits.length === 0) return 0;
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    const z = logits[i] as ArrayLike<number>;
    const k = z.length;
    let max = -Infinity;
    for (let c = 0; c < k; c++) max = Math.max(max, (z[c] as number) / temperature);
    let sum = 0;
    let scaledSum = 0;
    for (let c = 0; c < k; c++) {
      const scaled = (z[c] as number) / temperature;
      sum += Math.exp(scaled - max);
      scaledSum += scaled;
    }
    const logNormaliser = max + Math.log(sum);
    const y = labels[i] as number;
    const trueLogP = (z[y] as number) / temperature - logNormaliser;
    if (!trueTarget || k < 2) {
      total -= trueLogP;
      continue;
    }
    const a = trueTarget[i] as number;
    // sum over c != y of ln p_c = sum over all c of (z_c / T - logNormaliser), less ln p_y
    const otherLogPSum = scaledSum - k * logNormaliser - trueLogP;
    total -= a * trueLogP + ((1 - a) / (k - 1)) * otherLogPSum;
  }
  return total / logits.length;
}

/**
 * Soft targets after Platt (1999) and Laplace's rule of succession: with n validation rows, each aims at
 * (n + 1) / (n + 2) for its label, as if one more row were right and one wrong. They keep a temperature
 * fitted on a perfectly classified validation set from running to 0 (infinitely sure), and fade as n grows.
 */
export function plattTargets(labels: ArrayLike<number>): Float64Array {
  const n = labels.length;
  return new Float64Array(n).fill((n + 1) / (n + 2));
}

const MIN_LOG_T = Math.log(0.05);
const MAX_LOG_T = Math.log(20);
const GOLDEN = (Math.sqrt(5) - 1) / 2;

/**
 * Temperature scaling (Guo et al. 2017): the single T > 0 minimising the NLL of softmax(logits / T) on
 * held-out rows (or, with `smoothTargets`, the cross-entropy to `plattTargets`), by golden-section search over
 * log T in [0.05, 20].
 */
export function fitTemperature(
  logits: readonly ArrayLike<number>[],
  labels: ArrayLike<number>,
  { smoothTargets = false }: { smoothTargets?: boolean } = {},
): number {
  if (logits.length === 0) return 1;
  const targets = smoothTargets ? plattTargets(labels) : undefined;
  const f = (u: number) => temperatureNll(logits, labels, Math.exp(u), targets);
  let lo = MIN_LOG_T;
  let hi = MAX_LOG_T;
  let a = hi - GOLDEN * (hi - lo);
  let b = lo + GOLDEN * (hi - lo);
  let fa = f(a);
  let fb = f(b);
  while (hi - lo > 1e-5) {
    if (fa < fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - GOLDEN * (hi - lo);
      fa = f(a);
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + GOLDEN * (hi - lo);
      fb = f(b);
    }
  }
  const best = Math.exp((lo + hi) / 2);
  // Never return a temperature that does worse than leaving the logits alone.
  return f((lo + hi) / 2) <= f(0) ? best : 1;
}

/** softmax(z / temperature), computed in double precision. */
export function softmax(z: ArrayLike<number>, temperature = 1): Float64Array {
  const out = new Float64Array(z.length);
  let max = -Infinity;
  for (let c = 0; c < z.length; c++) max = Math.max(max, (z[c] as number) / temperature);
  let sum = 0;
  for (let c = 0; c < z.length; c++) {
    const e = Math.exp((z[c] as number) / temperature - max);
    out[c] = e;
    sum += e;
  }
  for (let c = 0; c < z.length; c++) out[c] = (out[c] as number) / sum;
  return out;
}
