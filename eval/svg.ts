// Hand-written SVG figures of the evaluation: a confusion-matrix heat map and a learning curve, side by side in
// one file per dataset. No chart library: rects, lines and text.

/** A piece of a figure drawn in its own coordinates, from (0, 0) to (width, height). */
export interface Panel {
  width: number;
  height: number;
  body: string;
}

export interface CurvePoint {
  /** Labelled examples per class (the x axis is log-scaled). */
  x: number;
  /** Accuracy in %. */
  y: number;
  /** Standard deviation over draws, drawn as an error bar when above 0. */
  sd?: number;
  /** Tick label for this x (e.g. "all (6000)"); the number itself otherwise. */
  tick?: string;
}

export interface CurveSeries {
  name: string;
  points: CurvePoint[];
}

export interface ReferenceLine {
  name: string;
  y: number;
}

const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

/** Escapes text for SVG content and attribute values. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const r1 = (v: number) => Math.round(v * 10) / 10;

/** A generous estimate of the width of a line of text in the figure's sans-serif font. */
const textWidth = (text: string, fontSize: number) => Math.ceil(text.length * fontSize * 0.56);

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** White to dark blue (ColorBrewer Blues ends) for a value in [0, 1]. */
export function heatColour(value: number): string {
  const v = clamp(Number.isFinite(value) ? value : 0, 0, 1);
  const from = [247, 251, 255];
  const to = [8, 48, 107];
  const channel = (i: number) =>
    Math.round((from[i] as number) + ((to[i] as number) - (from[i] as number)) * v);
  return `rgb(${channel(0)},${channel(1)},${channel(2)})`;
}

/**
 * A confusion matrix as a heat map: rows are true labels, columns predicted ones; colour is the row-normalised
 * share (recall per class on the diagonal), and counts are written in the cells when they fit.
 */
export function confusionPanel(
  matrix: readonly (readonly number[])[],
  labels: readonly string[],
  { title, subtitle }: { title: string; subtitle?: string },
): Panel {
  const k = labels.length;
  const cell = clamp(Math.floor(620 / Math.max(1, k)), 7, 44);
  const fontSize = r1(clamp(cell * 0.75, 5, 12));
  const shown = labels.map((label) => truncate(label, 34));
  const labelWidth = Math.ceil(Math.max(...shown.map((l) => l.length), 1) * fontSize * 0.58) + 8;
  const left = 26 + labelWidth;
  const top = (subtitle ? 56 : 40) + labelWidth;
  const size = cell * k;
  const width = Math.max(left + size + 20, textWidth(title, 15), textWidth(subtitle ?? '', 11));
  const height = top + size + 34;
  const parts: string[] = [];
  parts.push(`<text x="0" y="18" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  if (subtitle) parts.push(`<text x="0" y="38" font-size="11" fill="#444">${escapeXml(subtitle)}</text>`);
  parts.push(
    `<rect x="${left}" y="${top}" width="${size}" height="${size}" fill="${heatColour(0)}" stroke="#999"/>`,
  );
  const writeCounts = cell >= 22;
  matrix.forEach((row, r) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, c) => {
      if (count === 0) return;
      const share = total > 0 ? count / total : 0;
      const x = left + c * cell;
      const y = top + r * cell;
      const tip = `${labels[r] ?? ''} → ${labels[c] ?? ''}: ${count} (${(share * 100).toFixed(1)}% of row)`;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${heatColour(share)}"><title>${escapeXml(tip)}</title></rect>`,
      );
      if (writeCounts) {
        const fill = share > 0.5 ? '#fff' : '#222';
        const countFont = r1(clamp(cell * 0.36, 7, 12));
        parts.push(
          `<text x="${x + cell / 2}" y="${y + cell / 2 + countFont * 0.35}" font-size="${countFont}" text-anchor="middle" fill="${fill}">${count}</text>`,
        );
      }
    });
  });
  // Row labels (true) on the left, column labels (predicted) on top, read upwards.
  shown.forEach((label, i) => {
    const y = top + i * cell + cell / 2 + fontSize * 0.35;
    parts.push(
      `<text x="${left - 4}" y="${r1(y)}" font-size="${fontSize}" text-anchor="end">${escapeXml(label)}</text>`,
    );
    const x = left + i * cell + cell / 2 + fontSize * 0.35;
    parts.push(
      `<text transform="translate(${r1(x)},${top - 4}) rotate(-90)" font-size="${fontSize}" text-anchor="start">${escapeXml(label)}</text>`,
    );
  });
  parts.push(
    `<text transform="translate(12,${top + size / 2}) rotate(-90)" font-size="12" text-anchor="middle">true label</text>`,
    `<text x="${left + size / 2}" y="${top + size + 22}" font-size="12" text-anchor="middle">predicted label</text>`,
  );
  return { width, height, body: parts.join('\n') };
}

/**
 * Accuracy against labelled examples per class (log x axis), one line per series with error bars for the
 * standard deviation over draws, and dashed horizontal reference lines.
 */
export function learningCurvePanel(
  series: readonly CurveSeries[],
  {
    title,
    subtitle,
    references = [],
    xLabel = 'labelled examples per class (log scale)',
    yLabel = 'test accuracy (%)',
  }: {
    title: string;
    subtitle?: string;
    references?: readonly ReferenceLine[];
    xLabel?: string;
    yLabel?: string;
  },
): Panel {
  const plotWidth = 460;
  const plotHeight = 300;
  const left = 56;
  const top = subtitle ? 58 : 40;
  const points = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y));
  const xs = [...new Set(points.map((p) => p.x))].sort((a, b) => a - b);
  const ys = [
    ...points.flatMap((p) => [p.y - (p.sd ?? 0), p.y + (p.sd ?? 0)]),
    ...references.map((r) => r.y),
  ].filter(Number.isFinite);
  const yMin = ys.length > 0 ? Math.max(0, Math.floor((Math.min(...ys) - 1) / 5) * 5) : 0;
  const yMax = ys.length > 0 ? Math.min(100, Math.ceil((Math.max(...ys) + 1) / 5) * 5) : 100;
  const span = Math.max(5, yMax - yMin);
  const xMin = Math.log2((xs[0] ?? 1) / 1.4);
  const xMax = Math.log2((xs[xs.length - 1] ?? 2) * 1.4);
  const pxAxis = (x: number) => r1(left + ((Math.log2(x) - xMin) / Math.max(1e-9, xMax - xMin)) * plotWidth);
  const py = (y: number) => r1(top + plotHeight - ((y - yMin) / span) * plotHeight);
  const parts: string[] = [];
  parts.push(`<text x="0" y="18" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  if (subtitle) parts.push(`<text x="0" y="38" font-size="11" fill="#444">${escapeXml(subtitle)}</text>`);
  parts.push(
    `<rect x="${left}" y="${top}" width="${plotWidth}" height="${plotHeight}" fill="#fff" stroke="#999"/>`,
  );
  const step = span > 40 ? 10 : span > 15 ? 5 : span > 6 ? 2 : 1;
  for (let y = Math.ceil(yMin / step) * step; y <= yMin + span + 1e-9; y += step) {
    parts.push(
      `<line x1="${left}" x2="${left + plotWidth}" y1="${py(y)}" y2="${py(y)}" stroke="#e5e5e5"/>`,
      `<text x="${left - 6}" y="${py(y) + 4}" font-size="11" text-anchor="end">${y}</text>`,
    );
  }
  const ticks = new Map<number, string>();
  for (const p of points) if (!ticks.has(p.x) || p.tick) ticks.set(p.x, p.tick ?? String(p.x));
  for (const [x, tick] of ticks) {
    parts.push(
      `<line x1="${pxAxis(x)}" x2="${pxAxis(x)}" y1="${top}" y2="${top + plotHeight}" stroke="#eee"/>`,
      `<text x="${pxAxis(x)}" y="${top + plotHeight + 16}" font-size="11" text-anchor="middle">${escapeXml(tick)}</text>`,
    );
  }
  references.forEach((ref, i) => {
    const y = py(ref.y);
    parts.push(
      `<line x1="${left}" x2="${left + plotWidth}" y1="${y}" y2="${y}" stroke="#777" stroke-dasharray="5,4"/>`,
      `<text x="${left + plotWidth - 4}" y="${y - 4 - (i % 2) * 0}" font-size="10" text-anchor="end" fill="#555">${escapeXml(`${ref.name} ${ref.y.toFixed(1)}`)}</text>`,
    );
  });
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length] as string;
    // Series are nudged apart a few pixels so that points at the same x stay visible.
    const nudge = (i - (series.length - 1) / 2) * 3;
    const px = (x: number) => r1(pxAxis(x) + nudge);
    const ordered = s.points.filter((p) => Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    if (ordered.length > 1) {
      const d = ordered.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p.x)},${py(p.y)}`).join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    }
    for (const p of ordered) {
      if (p.sd && p.sd > 0) {
        parts.push(
          `<line x1="${px(p.x)}" x2="${px(p.x)}" y1="${py(p.y - p.sd)}" y2="${py(p.y + p.sd)}" stroke="${colour}" stroke-width="1.5"/>`,
        );
      }
      const tip = `${s.name}: ${p.y.toFixed(2)}%${p.sd ? ` ± ${p.sd.toFixed(2)}` : ''} at ${p.tick ?? p.x}/class`;
      parts.push(
        `<circle cx="${px(p.x)}" cy="${py(p.y)}" r="3.5" fill="${colour}"><title>${escapeXml(tip)}</title></circle>`,
      );
    }
  });
  parts.push(
    `<text x="${left + plotWidth / 2}" y="${top + plotHeight + 36}" font-size="12" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text transform="translate(14,${top + plotHeight / 2}) rotate(-90)" font-size="12" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  );
  // Legend under the plot, one entry a line.
  const legendTop = top + plotHeight + 56;
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length] as string;
    const y = legendTop + i * 18;
    parts.push(
      `<line x1="${left}" x2="${left + 22}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="2"/>`,
      `<circle cx="${left + 11}" cy="${y}" r="3.5" fill="${colour}"/>`,
      `<text x="${left + 30}" y="${y + 4}" font-size="12">${escapeXml(s.name)}</text>`,
    );
  });
  const height = legendTop + series.length * 18 + 6;
  const width = Math.max(left + plotWidth + 24, textWidth(title, 15), textWidth(subtitle ?? '', 11));
  return { width, height, body: parts.join('\n') };
}

/** A standalone SVG document: a title, panels left to right, and notes (one a line) underneath. */
export function figureSvg(title: string, panels: readonly Panel[], notes: readonly string[] = []): string {
  const gap = 36;
  const margin = 20;
  const titleHeight = 34;
  const panelsWidth = panels.reduce((sum, p) => sum + p.width, 0) + gap * Math.max(0, panels.length - 1);
  const panelsHeight = Math.max(0, ...panels.map((p) => p.height));
  const noteLines = notes.flatMap((note) => wrap(note, Math.max(60, Math.floor(panelsWidth / 6.2))));
  const width = Math.ceil(Math.max(panelsWidth, 400) + 2 * margin);
  const height = Math.ceil(margin + titleHeight + panelsHeight + 14 + noteLines.length * 15 + margin);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${margin}" y="${margin + 18}" font-size="20" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  let x = margin;
  for (const panel of panels) {
    parts.push(`<g transform="translate(${x},${margin + titleHeight})">`, panel.body, '</g>');
    x += panel.width + gap;
  }
  noteLines.forEach((line, i) => {
    const y = margin + titleHeight + panelsHeight + 14 + i * 15 + 11;
    parts.push(`<text x="${margin}" y="${y}" font-size="11" fill="#444">${escapeXml(line)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}
