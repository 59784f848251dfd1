import { CsvError, parse as parseCsv } from 'csv-parse/sync';
import { GraftError } from '../errors.js';

/** One example: a text or an image (base64 or key), with a label when it is labelled. */
export interface DatasetRow {
  text?: string;
  image?: string;
  label?: string;
}

/** The upload formats: JSON Lines (one object per line) or CSV with a header row. */
export type DatasetFormat = 'jsonl' | 'csv';

/** What `validateForTraining` found and changed. */
export interface DatasetReport {
  /** Rows kept (labelled + unlabelled). */
  rows: number;
  labelled: number;
  unlabelled: number;
  /** Examples per label among the kept rows. */
  labels: Record<string, number>;
  /** Exact repeats of an input and label, plus unlabelled rows whose input also appears with a label. */
  duplicatesRemoved: number;
  /** Distinct inputs given more than one label; each keeps its most frequent label (first seen on a tie). */
  conflictingLabels: number;
  warnings: string[];
}

/** Longest accepted text, in UTF-16 code units. */
export const MAX_TEXT_LENGTH = 100_000;
/** Longest accepted label, in UTF-16 code units. */
export const MAX_LABEL_LENGTH = 200;
/** Labels with too few examples named in the error's message, and listed in its details. */
const MAX_LABELS_NAMED = 10;
const MAX_LABELS_IN_DETAILS = 100;

const JSONL_TYPES = ['application/x-ndjson', 'application/jsonl', 'application/json-lines'];
const CSV_TYPES = ['text/csv'];
const EXAMPLE_LINE = '{"text": "...", "label": "..."}';
const JSONL_HINT = `each line must be one JSON object like ${EXAMPLE_LINE}`;
const CURL_HINT =
  `curl -X POST "$GRAFT_URL/v1/tasks/<task>/datasets" -H "Authorization: Bearer $GRAFT_API_KEY" ` +
  `-H 'Content-Type: application/x-ndjson' --data-binary @data.jsonl`;

/**
 * Maps an upload's Content-Type to a dataset format (parameters such as `charset` are ignored); anything else
 * throws UNSUPPORTED_MEDIA_TYPE naming the accepted types.
 */
export function formatFromContentType(contentType: string | undefined): DatasetFormat {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (JSONL_TYPES.includes(mediaType)) return 'jsonl';
  if (CSV_TYPES.includes(mediaType)) return 'csv';
  const what = contentType
    ? `Content-Type ${JSON.stringify(contentType)} is not a dataset format`
    : 'No Content-Type';
  throw new GraftError(
    'UNSUPPORTED_MEDIA_TYPE',
    `${what}: send JSON Lines as ${JSONL_TYPES.join(', ')} or CSV (with a header row) as text/csv. ` +
      `For example: ${CURL_HINT} (use --data-binary: -d strips the newlines).`,
    { details: { contentType: contentType ?? null, accepted: [...JSONL_TYPES, ...CSV_TYPES] } },
  );
}

/**
 * Parses an uploaded dataset into rows. Throws INVALID_DATASET naming the line (and `details.line`) of the first
 * problem: bytes that are not UTF-8, a line that is not a JSON object, a malformed CSV row, a missing or empty
 * text, a label that is too long. Texts and labels are trimmed; an empty label means unlabelled.
 */
export function parseDataset(body: Uint8Array, format: DatasetFormat): DatasetRow[] {
  const text = decodeUtf8(body);
  switch (format) {
    case 'jsonl':
      return parseJsonl(text);
    case 'csv':
      return parseCsvRows(text);
    default:
      throw new GraftError('UNSUPPORTED_MEDIA_TYPE', `Unknown dataset format ${JSON.stringify(format)}.`);
  }
}

/**
 * Checks that rows can train a classifier, and cleans them: drops exact duplicates, resolves conflicting labels
 * (an input labelled differently keeps its most frequent label; the first seen on a tie), and keeps unlabelled
 * rows for self-training. Throws INVALID_DATASET when there is nothing labelled, DATASET_TOO_SMALL when fewer
 * than 2 labels or fewer than `minExamplesPerLabel` examples of a label remain.
 */
export function validateForTraining(
  rows: DatasetRow[],
  {
    minExamplesPerLabel = 5,
    knownLabelCounts = {},
  }: {
    minExamplesPerLabel?: number;
    /** Examples per label the task already has (earlier dataset versions): they count towards the minimums. */
    knownLabelCounts?: Record<string, number>;
  } = {},
): { rows: DatasetRow[]; report: DatasetReport } {
  if (!Number.isInteger(minExamplesPerLabel) || minExamplesPerLabel < 1) {
    throw new GraftError(
      'INVALID_OPTIONS',
      `minExamplesPerLabel must be a positive integer, got ${minExamplesPerLabel}.`,
    );
  }
  if (rows.length === 0) {
    throw new GraftError(
      'INVALID_DATASET',
      `The dataset has no rows: upload one example per line like ${EXAMPLE_LINE} (JSONL), ` +
        'or a CSV file with a header row "text,label".',
    );
  }

  // How often each input carries each label, counted before duplicates go: the majority decides conflicts.
  const labelCountsByInput = new Map<string, Map<string, number>>();
  for (const row of rows) {
    if (row.label === undefined) continue;
    const key = inputKey(row);
    const counts = labelCountsByInput.get(key) ?? new Map<string, number>();
    counts.set(row.label, (counts.get(row.label) ?? 0) + 1);
    labelCountsByInput.set(key, counts);
  }
  const chosenLabel = new Map<string, string>();
  const conflicts: string[] = [];
  for (const [key, counts] of labelCountsByInput) {
    let best: [string, number] | undefined;
    for (const entry of counts) if (!best || entry[1] > best[1]) best = entry;
    if (best) chosenLabel.set(key, best[0]);
    if (counts.size > 1) conflicts.push(key);
  }

  const kept: DatasetRow[] = [];
  const emitted = new Set<string>();
  let duplicatesRemoved = 0;
  let conflictRowsDropped = 0;
  for (const row of rows) {
    const key = inputKey(row);
    if (row.label !== undefined && row.label !== chosenLabel.get(key)) {
      conflictRowsDropped++;
      continue;
    }
    // An unlabelled row whose input is labelled elsewhere adds nothing, and would leak into self-training.
    if (emitted.has(key) || (row.label === undefined && chosenLabel.has(key))) {
      duplicatesRemoved++;
      continue;
    }
    emitted.add(key);
    kept.push(row);
  }

  const labels: Record<string, number> = {};
  let labelled = 0;
  for (const row of kept) {
    if (row.label === undefined) continue;
    labelled++;
    labels[row.label] = (labels[row.label] ?? 0) + 1;
  }
  const unlabelled = kept.length - labelled;

  if (Object.keys(knownLabelCounts).length < 2 && labelled === 0) {
    throw new GraftError(
      'INVALID_DATASET',
      `None of the ${kept.length} rows has a label: give examples a "label" (a label column in CSV). ` +
        'Unlabelled rows are only used alongside labelled ones, for self-training.',
      { details: { rows: kept.length } },
    );
  }
  // Earlier dataset versions of the task count: an upload may add examples of one label only.
  const total: Record<string, number> = { ...knownLabelCounts };
  for (const [label, count] of Object.entries(labels)) total[label] = (total[label] ?? 0) + count;
  const labelNames = Object.keys(total);
  if (labelNames.length < 2) {
    const [only = ''] = labelNames;
    throw new GraftError(
      'DATASET_TOO_SMALL',
      `Only one label ${JSON.stringify(only)} in the dataset (${plural(labelled, 'example')}): ` +
        'at least 2 labels are needed to train a classifier. Add examples of the other labels.',
      { details: { labels } },
    );
  }
  const rare = Object.entries(total).filter(([, count]) => count < minExamplesPerLabel);
  if (rare.length > 0) {
    // A file of 100,000 one-row labels names the first few: the error stays readable and small.
    const shown = rare.slice(0, MAX_LABELS_NAMED);
    const each = shown.map(
      ([label, count]) => `label ${JSON.stringify(label)} has ${plural(count, 'example')}`,
    );
    const more = rare.length - shown.length;
    throw new GraftError(
      'DATASET_TOO_SMALL',
      `${each.join(', ')}${more > 0 ? ` (and ${plural(more, 'more label')} like them)` : ''}, ` +
        `at least ${minExamplesPerLabel} are needed${rare.length > 1 ? ' per label' : ''}. ` +
        `Add examples, or remove the rows of ${rare.length > 1 ? 'these labels' : 'this label'}.`,
      {
        details: {
          labels: Object.fromEntries(rare.slice(0, MAX_LABELS_IN_DETAILS)),
          rareLabels: rare.length,
          minExamplesPerLabel,
        },
      },
    );
  }

  const warnings: string[] = [];
  if (duplicatesRemoved > 0) warnings.push(`${plural(duplicatesRemoved, 'duplicate row')} removed.`);
  if (conflicts.length > 0) {
    const [first = ''] = conflicts;
    const shown = [...(labelCountsByInput.get(first)?.keys() ?? [])].map((label) => JSON.stringify(label));
    warnings.push(
      `${plural(conflicts.length, 'input')} had conflicting labels; each keeps its most frequent label ` +
        `(${plural(conflictRowsDropped, 'row')} dropped). For example ${describeInput(first)} is labelled ${shown.join(' and ')}.`,
    );
  }
  if (unlabelled > 0) warnings.push(`${plural(unlabelled, 'unlabelled row')} kept for self-training.`);
  const counts = Object.entries(labels).sort((a, b) => a[1] - b[1]);
  const smallest = counts[0];
  const largest = counts[counts.length - 1];
  if (smallest && largest && largest[1] >= 10 * smallest[1]) {
    warnings.push(
      `Labels are imbalanced: ${JSON.stringify(largest[0])} has ${largest[1]} examples, ${JSON.stringify(smallest[0])} ` +
        `has ${smallest[1]}. Class weights compensate, but more examples of rare labels help most.`,
    );
  }

  return {
    rows: kept,
    report: {
      rows: kept.length,
      labelled,
      unlabelled,
      labels,
      duplicatesRemoved,
      conflictingLabels: conflicts.length,
      warnings,
    },
  };
}

function decodeUtf8(body: Uint8Array): string {
  // A leading BOM is dropped by the decoder (ignoreBOM: false).
  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    return decoder.decode(body);
  } catch (err) {
    const line = firstInvalidLine(body);
    throw new GraftError(
      'INVALID_DATASET',
      `The dataset is not valid UTF-8 (first bad bytes on line ${line}): save the file with UTF-8 encoding.`,
      { details: { line }, cause: err },
    );
  }
}

// LF (0x0a) never occurs inside a multi-byte UTF-8 sequence, so lines can be checked one by one.
function firstInvalidLine(body: Uint8Array): number {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let line = 1;
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i < body.length && body[i] !== 0x0a) continue;
    try {
      decoder.decode(body.subarray(start, i));
    } catch {
      return line;
    }
    line++;
    start = i + 1;
  }
  return line;
}

function parseJsonl(text: string): DatasetRow[] {
  const rows: DatasetRow[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const source = lines[index] ?? '';
    const line = index + 1;
    if (source.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw rowError(line, `${truncate(reason, 200)} — ${JSONL_HINT}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw rowError(line, `expected a JSON object, got ${describeValue(value)} — ${JSONL_HINT}`);
    }
    const fields = value as Record<string, unknown>;
    const row = buildRow(line, { text: fields.text, image: fields.image, label: fields.label });
    if (!row) throw rowError(line, `the object has no "text" (or "image") field — ${JSONL_HINT}`);
    rows.push(row);
  }
  return rows;
}

function parseCsvRows(text: string): DatasetRow[] {
  if (text.trim() === '') return [];
  const bytes = Buffer.from(text);
  const lineAt = lineCounter(bytes);
  const records: { fields: string[]; line: number }[] = [];
  // Line numbers are computed from byte offsets: csv-parse's own `lines` drifts on CRLF files.
  let recordEnd = 0;
  try {
    parseCsv(bytes, {
      skip_empty_lines: true,
      // Ragged rows are reported below, with the header's width and a hint.
      relax_column_count: true,
      record_delimiter: ['\r\n', '\n'],
      on_record: (fields: string[], info) => {
        records.push({ fields, line: lineAt(recordEnd) });
        recordEnd = info.bytes;
        return null;
      },
    });
  } catch (err) {
    throw csvError(err, lineAt(recordEnd));
  }

  const [header, ...body] = records;
  if (!header) return [];
  const columns = header.fields.map((name) => name.trim().toLowerCase());
  for (const [i, name] of columns.entries()) {
    if (name !== '' && columns.indexOf(name) !== i) {
      throw rowError(header.line, `the header has the column ${JSON.stringify(name)} twice`, { columns });
    }
  }
  const textColumn = columns.indexOf('text');
  const imageColumn = columns.indexOf('image');
  const labelColumn = columns.indexOf('label');
  if (textColumn < 0 && imageColumn < 0) {
    throw rowError(
      header.line,
      `the CSV header has no "text" (or "image") column; found ${columns.map((c) => JSON.stringify(c)).join(', ')}. ` +
        'The first row must name the columns, like: text,label',
      { columns, expected: ['text', 'image', 'label'] },
    );
  }

  const rows: DatasetRow[] = [];
  for (const { fields, line } of body) {
    // A row of blank cells reads as a blank line (spreadsheets export them as trailing commas).
    if (fields.every((field) => field.trim() === '')) continue;
    if (fields.length !== columns.length) {
      throw rowError(
        line,
        `this row has ${plural(fields.length, 'field')} but the header has ${columns.length} (${columns.join(', ')}) — ` +
          'quote fields that contain commas or line breaks, like "one, two", and double quotes inside them ("").',
      );
    }
    const cell = (column: number) => {
      const value = column < 0 ? undefined : fields[column]?.trim();
      return value === '' ? undefined : value;
    };
    const row = buildRow(line, {
      text: cell(textColumn),
      image: cell(imageColumn),
      label: cell(labelColumn),
    });
    if (!row) throw rowError(line, `the ${textColumn >= 0 ? 'text' : 'image'} is empty`);
    rows.push(row);
  }
  return rows;
}

// Returns undefined when the row has neither text nor image: the caller words that error for its format.
function buildRow(
  line: number,
  raw: { text: unknown; image: unknown; label: unknown },
): DatasetRow | undefined {
  const text = inputField(line, 'text', raw.text);
  const image = inputField(line, 'image', raw.image);
  if (text === undefined && image === undefined) return undefined;
  const row: DatasetRow = {};
  if (text !== undefined) row.text = text;
  if (image !== undefined) row.image = image;
  const label = labelField(line, raw.label);
  if (label !== undefined) row.label = label;
  return row;
}

function inputField(line: number, name: 'text' | 'image', value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw rowError(line, `"${name}" must be a string, got ${describeValue(value)}`, { field: name });
  }
  const trimmed = value.trim();
  if (trimmed === '') throw rowError(line, `"${name}" is empty`, { field: name });
  if (name === 'text' && trimmed.length > MAX_TEXT_LENGTH) {
    throw rowError(line, `"text" has ${trimmed.length} characters, at most ${MAX_TEXT_LENGTH} are allowed`, {
      field: name,
    });
  }
  return trimmed;
}

function labelField(line: number, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  let label: string;
  if (typeof value === 'string') label = value.trim();
  else if (typeof value === 'number' && Number.isFinite(value)) label = String(value);
  else {
    throw rowError(line, `"label" must be a string or a number, got ${describeValue(value)}`, {
      field: 'label',
    });
  }
  if (label.length > MAX_LABEL_LENGTH) {
    throw rowError(line, `"label" has ${label.length} characters, at most ${MAX_LABEL_LENGTH} are allowed`, {
      field: 'label',
    });
  }
  return label === '' ? undefined : label;
}

// Maps a byte offset where a record may start to the line of its first character, skipping blank lines as
// csv-parse does. Offsets only grow, so the scan is linear over the whole file.
function lineCounter(bytes: Uint8Array): (offset: number) => number {
  let position = 0;
  let line = 1;
  const step = () => {
    if (bytes[position] === 0x0a) line++;
    position++;
  };
  return (offset) => {
    while (position < offset && position < bytes.length) step();
    while (bytes[position] === 0x0a || bytes[position] === 0x0d) step();
    return line;
  };
}

function csvError(err: unknown, line: number): GraftError {
  const quoting = 'wrap such a field in quotes and double the quotes inside it: "she said ""hi"""';
  if (!(err instanceof CsvError)) {
    const reason = err instanceof Error ? err.message : String(err);
    return rowError(line, `the CSV could not be parsed: ${reason}`);
  }
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return rowError(line, 'a quoted field starts on this row but its closing quote (") is missing');
    case 'INVALID_OPENING_QUOTE':
      return rowError(line, `a quote (") appears inside an unquoted field — ${quoting}`);
    case 'CSV_INVALID_CLOSING_QUOTE':
      return rowError(line, `a quoted field is followed by more characters — ${quoting}`);
    default:
      return rowError(line, err.message);
  }
}

function rowError(line: number, message: string, details: Record<string, unknown> = {}): GraftError {
  return new GraftError('INVALID_DATASET', `line ${line}: ${message}`, { details: { line, ...details } });
}

function inputKey(row: DatasetRow): string {
  return JSON.stringify([row.text ?? null, row.image ?? null]);
}

function describeInput(key: string): string {
  const [text, image] = JSON.parse(key) as [string | null, string | null];
  return text !== null
    ? `the text ${JSON.stringify(truncate(text, 60))}`
    : `the image ${truncate(image ?? '', 40)}`;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value} (${truncate(JSON.stringify(value) ?? String(value), 40)})`;
}

function truncate(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
