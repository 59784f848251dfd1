// Reference figures the evaluation prints beside its own. Copied by hand from ../shared/datasets/SOURCES.md
// ("Reference numbers", accuracy %, on the same splits unless noted) and, for Fashion-MNIST at 100 labels per
// class, from issue 3 (scikit-learn, mean of 3 draws). Keep this table in step with SOURCES.md.

/** One published or measured figure: accuracy in % (and macro-F1 in % where the source gives it). */
export interface Reference {
  method: string;
  accuracy: number | [number, number];
  macroF1?: number;
  note?: string;
}

export const SOURCES_FILE = '../shared/datasets/SOURCES.md';

// The columns of SOURCES.md's table, one maker each.
const TFIDF_METHOD = 'TF-IDF 1-2 gram + LogisticRegression(C=10)';
const tfidf = (accuracy: number, macroF1?: number): Reference => ({
  method: TFIDF_METHOD,
  accuracy,
  ...(macroF1 === undefined ? {} : { macroF1 }),
  note: 'scikit-learn 1.2, measured',
});
const frozen = (model: string, accuracy: number, note: string): Reference => ({
  method: `frozen ${model} + logistic regression`,
  accuracy,
  note,
});
const fineTunedBert = (accuracy: Reference['accuracy'], note = 'published'): Reference => ({
  method: 'fully fine-tuned BERT-base',
  accuracy,
  note,
});

export const REFERENCES: Readonly<Record<string, readonly Reference[]>> = {
  banking77: [
    tfidf(89.48, 89.51),
    frozen('all-MiniLM-L6-v2', 80.0, 'MTEB, published: only 8 examples per label'),
    frozen('bge-small', 85.7, 'MTEB, published: only 8 examples per label'),
    fineTunedBert(93.1),
  ],
  trec: [tfidf(88.2), frozen('SBERT-NLI-base', 89.6, 'SentEval, published'), fineTunedBert(97.4)],
  sst2: [
    tfidf(82.68),
    frozen('SBERT-NLI-base', 89.0, 'SentEval, published'),
    fineTunedBert([92.4, 93.2], 'published, GLUE dev'),
  ],
  'sms-spam': [tfidf(97.85, 95.6)],
  'fashion-mnist': [
    { method: 'small CNNs trained end to end', accuracy: [87.6, 93.2], note: 'Zalando benchmark table' },
    {
      method: 'mnist-8 features (256-d) + logistic regression, 100/class',
      accuracy: 79.7,
      note: 'issue 3, scikit-learn, mean of 3 draws',
    },
    { method: 'raw pixels + logistic regression, 100/class', accuracy: 79.3, note: 'issue 3, scikit-learn' },
    {
      method: 'mnist-8 features + raw pixels + logistic regression, 100/class',
      accuracy: 81.7,
      note: 'issue 3, scikit-learn',
    },
    {
      method: 'shuffled mnist-8 weights + logistic regression, 100/class',
      accuracy: 74.1,
      note: 'issue 3, scikit-learn',
    },
  ],
};

/**
 * The text target: `hash-ngrams` + best head must reach the TF-IDF + logistic-regression accuracy minus
 * this many points.
 */
export const TFIDF_TARGET_MARGIN = 1.0;

/** The TF-IDF + LogisticRegression accuracy of a text dataset, the bar of the first target. */
export function tfidfReference(dataset: string): number | undefined {
  const found = REFERENCES[dataset]?.find((r) => r.method === TFIDF_METHOD);
  return typeof found?.accuracy === 'number' ? found.accuracy : undefined;
}

/** "89.48" or "92.4–93.2". */
export function formatReferenceAccuracy(reference: Reference): string {
  const { accuracy } = reference;
  return typeof accuracy === 'number' ? accuracy.toFixed(2) : `${accuracy[0]}–${accuracy[1]}`;
}
