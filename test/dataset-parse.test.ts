import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DatasetFormat,
  type DatasetRow,
  formatFromContentType,
  MAX_LABEL_LENGTH,
  MAX_TEXT_LENGTH,
  parseDataset,
  validateForTraining,
} from '../src/core/dataset-parse.js';
import { GraftError } from '../src/errors.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const parse = (text: string, format: DatasetFormat) => parseDataset(bytes(text), format);

/** Runs `fn` and returns the GraftError it throws (failing the test when it throws nothing or something else). */
function caught(fn: () => unknown): GraftError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GraftError);
    return err as GraftError;
  }
  throw new Error('expected a GraftError, nothing was thrown');
}

/** `counts` examples of each label, with distinct texts. */
function labelledRows(counts: Record<string, number>): DatasetRow[] {
  return Object.entries(counts).flatMap(([label, count]) =>
    Array.from({ length: count }, (_, i) => ({ text: `${label} example ${i}`, label })),
  );
}

/** A CSV writer that quotes every field, as spreadsheets do for fields with commas, quotes or line breaks. */
function toCsv(rows: DatasetRow[], newline = '\n'): string {
  const quote = (field: string) => `"${field.replaceAll('"', '""')}"`;
  const lines = rows.map(
    (row) => `${quote(row.text ?? '')},${row.label === undefined ? '' : quote(row.label)}`,
  );
  return ['text,label', ...lines].join(newline) + newline;
}

const toJsonl = (rows: DatasetRow[]) => rows.map((row) => JSON.stringify(row)).join('\n');

describe('formatFromContentType', () => {
  it.each([
    ['application/x-ndjson', 'jsonl'],
    ['application/jsonl', 'jsonl'],
    ['application/json-lines', 'jsonl'],
    ['Application/X-NDJSON; charset=utf-8', 'jsonl'],
    ['text/csv', 'csv'],
    ['text/csv;charset=UTF-8', 'csv'],
  ])('maps %s to %s', (contentType, format) => {
    expect(formatFromContentType(contentType)).toBe(format);
  });

  it.each([undefined, '', 'application/json', 'text/plain', 'multipart/form-data; boundary=x'])(
    'rejects %s with the accepted types and a curl hint',
    (contentType) => {
      const err = caught(() => formatFromContentType(contentType));
      expect(err.code).toBe('UNSUPPORTED_MEDIA_TYPE');
      expect(err.status).toBe(415);
      expect(err.message).toContain('application/x-ndjson');
      expect(err.message).toContain('text/csv');
      expect(err.message).toContain('curl');
      expect(err.message).toContain('--data-binary');
      expect(err.details?.accepted).toEqual([
        'application/x-ndjson',
        'application/jsonl',
        'application/json-lines',
        'text/csv',
      ]);
    },
  );
});

describe('parseDataset: JSONL', () => {
  it('reads one object per line, skipping blank lines, trimming, ignoring extra fields', () => {
    // given
    const body = [
      '{"text": "  where is my order  ", "label": "shipping", "id": 7}',
      '',
      '   ',
      '{"text": "refund please", "label": " refund "}\r',
      '{"text": "no label here"}',
      '{"text": "empty label", "label": ""}',
      '{"text": "null label", "label": null}',
      '{"image": "aGVsbG8=", "label": "cat"}',
    ].join('\n');

    // when
    const rows = parse(body, 'jsonl');

    // then
    expect(rows).toEqual([
      { text: 'where is my order', label: 'shipping' },
      { text: 'refund please', label: 'refund' },
      { text: 'no label here' },
      { text: 'empty label' },
      { text: 'null label' },
      { image: 'aGVsbG8=', label: 'cat' },
    ]);
    expect(rows[2]).not.toHaveProperty('label');
  });

  it('turns number labels into strings', () => {
    expect(
      parse('{"text": "a", "label": 1}\n{"text": "b", "label": 2.5}\n{"text": "c", "label": 0}', 'jsonl'),
    ).toEqual([
      { text: 'a', label: '1' },
      { text: 'b', label: '2.5' },
      { text: 'c', label: '0' },
    ]);
  });

  it('strips a byte order mark', () => {
    const body = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes('{"text": "hi", "label": "greeting"}\n')]);
    expect(parseDataset(body, 'jsonl')).toEqual([{ text: 'hi', label: 'greeting' }]);
  });

  it('names the line of invalid JSON, counting blank lines', () => {
    // given
    const body = '{"text": "ok", "label": "a"}\n\n{"text": "broken", "label": }\n{"text": "fine"}';

    // when
    const err = caught(() => parse(body, 'jsonl'));

    // then
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.status).toBe(422);
    expect(err.message).toMatch(
      /^line 3: .+ — each line must be one JSON object like \{"text": "\.\.\.", "label": "\.\.\."\}$/,
    );
    expect(err.details).toEqual({ line: 3 });
  });

  it('reports a file that is one pretty-printed JSON array at its first line', () => {
    const err = caught(() => parse('[\n  {"text": "a", "label": "x"}\n]', 'jsonl'));
    expect(err.message).toMatch(/^line 1: /);
    expect(err.details?.line).toBe(1);
  });

  it.each([
    ['["text", "label"]', 'an array'],
    ['42', 'a number'],
    ['"just a string"', 'a string'],
    ['null', 'null'],
  ])('rejects the non-object line %s', (line, what) => {
    const err = caught(() => parse(`{"text": "ok"}\n${line}`, 'jsonl'));
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(new RegExp(`^line 2: expected a JSON object, got ${what}`));
    expect(err.details?.line).toBe(2);
  });

  it.each([
    ['{"text": 42, "label": "a"}', 'text', /"text" must be a string, got a number/],
    ['{"text": ["a"], "label": "a"}', 'text', /"text" must be a string, got an array/],
    ['{"image": {"x": 1}}', 'image', /"image" must be a string, got an object/],
    ['{"text": "a", "label": true}', 'label', /"label" must be a string or a number, got a boolean/],
    ['{"text": "a", "label": {"name": "x"}}', 'label', /"label" must be a string or a number, got an object/],
    ['{"text": "   ", "label": "a"}', 'text', /"text" is empty/],
  ])('names the line and field of %s', (line, field, message) => {
    const err = caught(() => parse(`{"text": "first"}\n{"text": "second"}\n${line}`, 'jsonl'));
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(/^line 3: /);
    expect(err.message).toMatch(message);
    expect(err.details).toEqual({ line: 3, field });
  });

  it('rejects a row with neither text nor image', () => {
    const err = caught(() => parse('{"text": "a"}\n{"sentence": "b", "label": "x"}', 'jsonl'));
    expect(err.message).toMatch(/^line 2: the object has no "text" \(or "image"\) field/);
    expect(err.details).toEqual({ line: 2 });
  });

  it('limits texts and labels in length', () => {
    const longest = 'x'.repeat(MAX_TEXT_LENGTH);
    expect(parse(JSON.stringify({ text: longest }), 'jsonl')).toEqual([{ text: longest }]);
    const tooLong = caught(() => parse(`{"text": "a"}\n${JSON.stringify({ text: `${longest}y` })}`, 'jsonl'));
    expect(tooLong.message).toMatch(/^line 2: "text" has 100001 characters, at most 100000 are allowed/);

    const label = 'l'.repeat(MAX_LABEL_LENGTH);
    expect(parse(JSON.stringify({ text: 'a', label }), 'jsonl')).toEqual([{ text: 'a', label }]);
    const longLabel = caught(() => parse(JSON.stringify({ text: 'a', label: `${label}l` }), 'jsonl'));
    expect(longLabel.message).toMatch(/^line 1: "label" has 201 characters, at most 200 are allowed/);
    expect(longLabel.details).toEqual({ line: 1, field: 'label' });
  });

  it.each(['jsonl', 'csv'] as const)('rejects bytes that are not UTF-8, naming the line (%s)', (format) => {
    // given: Latin-1 "café" on the third line
    const head = format === 'jsonl' ? '{"text": "one"}\n{"text": "two"}\n' : 'text\none\n';
    const body = new Uint8Array([...bytes(head), 0x63, 0x61, 0x66, 0xe9, 0x0a]);

    // when
    const err = caught(() => parseDataset(body, format));

    // then
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(/not valid UTF-8.*line 3/);
    expect(err.details).toEqual({ line: 3 });
  });

  it('returns no rows for an empty body', () => {
    expect(parse('', 'jsonl')).toEqual([]);
    expect(parse('\n \n', 'jsonl')).toEqual([]);
  });
});

describe('parseDataset: CSV', () => {
  it('reads quoted fields holding commas, doubled quotes and line breaks', () => {
    // given
    const body = [
      'text,label',
      '"Hello, world",greeting',
      '"She said ""refund me"" twice",refund',
      '"line one',
      'line two",multi',
      'plain text ,  spaced label  ',
    ].join('\n');

    // when
    const rows = parse(body, 'csv');

    // then
    expect(rows).toEqual([
      { text: 'Hello, world', label: 'greeting' },
      { text: 'She said "refund me" twice', label: 'refund' },
      { text: 'line one\nline two', label: 'multi' },
      { text: 'plain text', label: 'spaced label' },
    ]);
  });

  it('finds columns case-insensitively in any order, ignores extra columns, and allows no label column', () => {
    expect(parse(' Label ,id,TEXT\nbilling,1,where is my invoice\n,2,unlabelled one\n', 'csv')).toEqual([
      { text: 'where is my invoice', label: 'billing' },
      { text: 'unlabelled one' },
    ]);
    expect(parse('text\nfirst\nsecond\n', 'csv')).toEqual([{ text: 'first' }, { text: 'second' }]);
    expect(parse('image,label\naGVsbG8=,cat\n', 'csv')).toEqual([{ image: 'aGVsbG8=', label: 'cat' }]);
  });

  it('reads CRLF files, a BOM, blank lines and rows of blank cells', () => {
    const body = new Uint8Array([
      0xef,
      0xbb,
      0xbf,
      ...bytes('text,label\r\nhi,greeting\r\n\r\n,\r\n"two\r\nlines",multi\r\n'),
    ]);
    expect(parseDataset(body, 'csv')).toEqual([
      { text: 'hi', label: 'greeting' },
      { text: 'two\r\nlines', label: 'multi' },
    ]);
  });

  it('returns no rows for an empty body or a header alone', () => {
    expect(parse('', 'csv')).toEqual([]);
    expect(parse('text,label\n', 'csv')).toEqual([]);
  });

  it('requires a text or image column, listing the columns found and expected', () => {
    const err = caught(() => parse('sentence,Category\nhello,greeting\n', 'csv'));
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(
      /^line 1: the CSV header has no "text" \(or "image"\) column; found "sentence", "category"/,
    );
    expect(err.message).toContain('text,label');
    expect(err.details).toEqual({
      line: 1,
      columns: ['sentence', 'category'],
      expected: ['text', 'image', 'label'],
    });
  });

  it('rejects a header that names a column twice', () => {
    const err = caught(() => parse('text,label,Text\na,b,c\n', 'csv'));
    expect(err.message).toMatch(/^line 1: the header has the column "text" twice/);
  });

  it('names the line where an unclosed quote starts', () => {
    const err = caught(() => parse('text,label\nok,a\n"broken,b\nmore,c\n', 'csv'));
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(/^line 3: a quoted field starts on this row but its closing quote/);
    expect(err.details).toEqual({ line: 3 });
  });

  it('names the line of a ragged row, after a record spanning two lines', () => {
    const err = caught(() => parse('text,label\n"two\nlines",a\nok,b\none,two,three\n', 'csv'));
    expect(err.message).toMatch(/^line 5: this row has 3 fields but the header has 2 \(text, label\)/);
    expect(err.details).toEqual({ line: 5 });

    const short = caught(() => parse('text,label\nok,b\nalone\n', 'csv'));
    expect(short.message).toMatch(/^line 3: this row has 1 field but the header has 2/);
  });

  it('counts lines right in CRLF files with line breaks inside fields', () => {
    // csv-parse's own line count drifts here; ours comes from byte offsets
    const body = 'text,label\r\n"a\r\nb\r\nc",x\r\n\r\nok,y\r\nbad"quote,z\r\n';
    const err = caught(() => parse(body, 'csv'));
    expect(err.message).toMatch(/^line 7: a quote \("\) appears inside an unquoted field/);
    expect(err.details).toEqual({ line: 7 });
  });

  it('names the line of characters after a closing quote', () => {
    const err = caught(() => parse('text,label\n"quoted"tail,a\n', 'csv'));
    expect(err.message).toMatch(/^line 2: a quoted field is followed by more characters/);
  });

  it('rejects an empty text cell, naming the line', () => {
    const err = caught(() => parse('text,label\nfine,a\n  ,refund\n', 'csv'));
    expect(err.message).toBe('line 3: the text is empty');
    expect(err.details).toEqual({ line: 3 });
  });

  it('rejects an over-long label, naming the line and field', () => {
    const err = caught(() => parse(`text,label\nfine,${'l'.repeat(201)}\n`, 'csv'));
    expect(err.message).toMatch(/^line 2: "label" has 201 characters/);
    expect(err.details).toEqual({ line: 2, field: 'label' });
  });
});

describe('validateForTraining', () => {
  it('rejects an empty dataset', () => {
    const err = caught(() => validateForTraining([]));
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(/^The dataset has no rows/);
  });

  it('rejects a dataset without labels', () => {
    const err = caught(() => validateForTraining([{ text: 'a' }, { text: 'b' }]));
    expect(err.code).toBe('INVALID_DATASET');
    expect(err.message).toMatch(/None of the 2 rows has a label/);
  });

  it('needs at least two labels', () => {
    const err = caught(() => validateForTraining(labelledRows({ refund: 8 })));
    expect(err.code).toBe('DATASET_TOO_SMALL');
    expect(err.message).toMatch(
      /^Only one label "refund" in the dataset \(8 examples\): at least 2 labels are needed/,
    );
    expect(err.details).toEqual({ labels: { refund: 8 } });
  });

  it('names each label with too few examples and its count', () => {
    const one = caught(() => validateForTraining(labelledRows({ billing: 5, refund: 2 })));
    expect(one.code).toBe('DATASET_TOO_SMALL');
    expect(one.message).toMatch(/^label "refund" has 2 examples, at least 5 are needed\./);
    expect(one.details).toEqual({ labels: { refund: 2 }, rareLabels: 1, minExamplesPerLabel: 5 });

    const two = caught(() => validateForTraining(labelledRows({ billing: 6, refund: 2, cancel: 1 })));
    expect(two.message).toMatch(
      /^label "refund" has 2 examples, label "cancel" has 1 example, at least 5 are needed/,
    );
    expect(two.details?.labels).toEqual({ refund: 2, cancel: 1 });
  });

  it('names the first 10 of many rare labels, counts the rest, and keeps its details small', () => {
    const counts = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`l${i}`, 1]));
    const err = caught(() => validateForTraining(labelledRows({ big: 6, ...counts })));
    expect(err.code).toBe('DATASET_TOO_SMALL');
    expect(err.message).toMatch(
      /^label "l0" has 1 example, .*label "l9" has 1 example \(and 4990 more labels/,
    );
    expect(err.message.length).toBeLessThan(1000);
    expect(Object.keys(err.details?.labels as object)).toHaveLength(100);
    expect(err.details?.rareLabels).toBe(5000);
  });

  it('takes the minimum from the options', () => {
    expect(() => validateForTraining(labelledRows({ a: 2, b: 2 }), { minExamplesPerLabel: 2 })).not.toThrow();
    expect(
      caught(() => validateForTraining(labelledRows({ a: 2, b: 2 }), { minExamplesPerLabel: 3 })).code,
    ).toBe('DATASET_TOO_SMALL');
  });

  it('drops exact duplicates and counts them, keeping unlabelled rows for self-training', () => {
    // given
    const rows = [
      ...labelledRows({ a: 5, b: 5 }),
      { text: 'a example 0', label: 'a' },
      { text: 'a example 0', label: 'a' },
      { text: 'unlabelled' },
      { text: 'unlabelled' },
      { text: 'b example 1' },
    ];

    // when
    const { rows: kept, report } = validateForTraining(rows);

    // then
    expect(kept).toEqual([...labelledRows({ a: 5, b: 5 }), { text: 'unlabelled' }]);
    expect(report).toMatchObject({
      rows: 11,
      labelled: 10,
      unlabelled: 1,
      labels: { a: 5, b: 5 },
      duplicatesRemoved: 4,
      conflictingLabels: 0,
    });
    expect(report.warnings).toContain('4 duplicate rows removed.');
    expect(report.warnings).toContain('1 unlabelled row kept for self-training.');
  });

  it('resolves conflicting labels by the most frequent one, the first on a tie', () => {
    // given
    const rows = [
      ...labelledRows({ a: 5, b: 5 }),
      { text: 'ambiguous', label: 'b' },
      { text: 'ambiguous', label: 'a' },
      { text: 'ambiguous', label: 'a' },
      { text: 'tied', label: 'b' },
      { text: 'tied', label: 'a' },
    ];

    // when
    const { rows: kept, report } = validateForTraining(rows);

    // then
    expect(kept.filter((row) => row.text === 'ambiguous')).toEqual([{ text: 'ambiguous', label: 'a' }]);
    expect(kept.filter((row) => row.text === 'tied')).toEqual([{ text: 'tied', label: 'b' }]);
    expect(report.conflictingLabels).toBe(2);
    expect(report.duplicatesRemoved).toBe(1);
    expect(report.labels).toEqual({ a: 6, b: 6 });
    expect(report.warnings.join('\n')).toMatch(/2 inputs had conflicting labels.*2 rows dropped/);
  });

  it('warns about imbalanced labels', () => {
    const { report } = validateForTraining(labelledRows({ common: 50, rare: 5 }));
    expect(report.warnings.join('\n')).toMatch(
      /Labels are imbalanced: "common" has 50 examples, "rare" has 5/,
    );
  });
});

describe('properties', () => {
  // Trimmed, non-empty strings over all of Unicode with CSV's special characters mixed in.
  const unit = fc.oneof(
    fc.constantFrom(',', '"', '\n', '\r\n', '\r', ' ', '\t', "'", '{', '\\'),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  );
  const field = (maxLength: number) =>
    fc
      .string({ unit, minLength: 1, maxLength })
      .map((value) => value.trim())
      .filter((value) => value !== '');
  const row = fc
    .record({ text: field(60), label: fc.option(field(20), { nil: undefined }) })
    .map(({ text, label }): DatasetRow => (label === undefined ? { text } : { text, label }));

  it('rows round-trip through JSONL', () => {
    fc.assert(
      fc.property(fc.array(row, { maxLength: 20 }), (rows) => {
        expect(parse(toJsonl(rows), 'jsonl')).toEqual(rows);
      }),
      { numRuns: 300 },
    );
  });

  it('rows round-trip through CSV, with LF or CRLF line ends', () => {
    fc.assert(
      fc.property(fc.array(row, { maxLength: 20 }), fc.constantFrom('\n', '\r\n'), (rows, newline) => {
        expect(parse(toCsv(rows, newline), 'csv')).toEqual(rows);
      }),
      { numRuns: 300 },
    );
  });

  it('any bytes either parse or throw a GraftError', () => {
    const piece = fc.constantFrom(
      '"',
      ',',
      '\n',
      '\r',
      ' ',
      '{',
      '}',
      '[',
      ':',
      'text',
      'label',
      '"text"',
      'a',
      '\uFEFF',
    );
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.array(piece, { maxLength: 40 }).map((pieces) => bytes(pieces.join(''))),
      fc
        .tuple(fc.array(piece, { maxLength: 20 }), fc.uint8Array({ maxLength: 8 }))
        .map(([pieces, tail]) => new Uint8Array([...bytes(`text,label\n${pieces.join('')}`), ...tail])),
    );
    fc.assert(
      fc.property(body, fc.constantFrom<DatasetFormat>('jsonl', 'csv'), (input, format) => {
        try {
          validateForTraining(parseDataset(input, format), { minExamplesPerLabel: 1 });
        } catch (err) {
          expect(err).toBeInstanceOf(GraftError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("validateForTraining with the task's earlier dataset versions", () => {
  const rows = (label: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({ text: `${label} ${i}`, label }));

  it('accepts an upload of one label when earlier versions hold the others', () => {
    // given a task that already has 5 "a" and 5 "b" examples
    const knownLabelCounts = { a: 5, b: 5 };
    // when 3 more "b" examples arrive (fewer than 5 alone, one label alone)
    const { report } = validateForTraining(rows('b', 3), { knownLabelCounts });
    // then they are accepted, and the report counts this upload only
    expect(report.labels).toEqual({ b: 3 });
  });

  it('counts earlier examples towards the minimum per label, and still refuses a new rare label', () => {
    expect(() => validateForTraining(rows('c', 2), { knownLabelCounts: { a: 5, c: 2 } })).toThrow(
      /label "c" has 4 examples, at least 5/,
    );
    expect(validateForTraining(rows('c', 3), { knownLabelCounts: { a: 5, c: 2 } }).report.labels).toEqual({
      c: 3,
    });
  });

  it('accepts unlabelled rows for self-training once the task has labelled data', () => {
    const { report } = validateForTraining([{ text: 'no label here' }], { knownLabelCounts: { a: 5, b: 5 } });
    expect(report).toMatchObject({ labelled: 0, unlabelled: 1 });
    expect(() => validateForTraining([{ text: 'no label here' }])).toThrow(GraftError);
  });
});
