import type { Aggregate } from './runner.js';

/** An aligned plain-text table (first column left-aligned, the others right-aligned). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** "79.12" or "79.12 ± 0.84" (figures in %); "failed" when no run succeeded. */
export function pct(agg: Aggregate | undefined, which: 'accuracy' | 'macroF1' = 'accuracy'): string {
  if (!agg || agg.succeeded === 0) return agg && agg.runs > 0 ? 'failed' : '—';
  const { mean, sd } = agg[which];
  return agg.succeeded > 1 ? `${mean.toFixed(2)} ± ${sd.toFixed(2)}` : mean.toFixed(2);
}

/** "logistic" or "logistic×2, mlp×1". */
export function chosen(agg: Aggregate | undefined): string {
  if (!agg) return '—';
  const entries = Object.entries(agg.chosen);
  if (entries.length === 0) return '—';
  if (entries.length === 1 && agg.succeeded === 1) return entries[0]?.[0] ?? '—';
  return entries.map(([s, n]) => `${s}×${n}`).join(', ');
}

/** Seconds with one decimal, from milliseconds. */
export function seconds(ms: number | undefined): string {
  return ms === undefined || !Number.isFinite(ms) ? '—' : (ms / 1000).toFixed(1);
}

/** "1h02m03s" / "4m05s" / "12.3s". */
export function duration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = Math.floor(s % 60)
    .toString()
    .padStart(2, '0');
  return h > 0 ? `${h}h${m.toString().padStart(2, '0')}m${rest}s` : `${m}m${rest}s`;
}

export const shotsLabel = (shots: number | 'all') => (shots === 'all' ? 'all' : `${shots}/class`);
