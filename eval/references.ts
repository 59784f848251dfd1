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

export const REFERENCES: Readonly<Record<string, readonly Reference[]>> = {
  banking77: [
    {
      method: 'TF-IDF 1-2 gram + LogisticRegression(C=10)',
      accuracy: 89.48,
      macroF1: 89.51,
      note: 'scikit-learn 1.2, measured',
    },
    {
      method: 'frozen all-MiniLM-L6-v2 + logistic regression',
      accuracy: 80.0,
      note: 'MTEB, published: only 8 examples per label',
    },
    {
      method: 'frozen bge-small + logistic regression',
      accuracy: 85.7,
      note: 'MTEB, published: only 8 examples per label',
    },
    { method: 'fully fine-tuned BERT-base', accuracy: 93.1, note: 'published' },
  ],
  trec: [
    {
      method: 'TF-IDF 1-2 gram + LogisticRegression(C=10)',
      accuracy: 88.2,
      note: 'scikit-learn 1.2, measured',
    },
    { method: 'frozen SBERT-NLI-base + logistic regression', accuracy: 89.6, note: 'SentEval, published' },
    { method: 'fully fine-tuned BERT-base', accuracy: 97.4, note: 'published' },
  ],
  sst2: [
    {
      method: 'TF-IDF 1-2 gram + LogisticRegression(C=10)',
      accuracy: 82.68,
      note: 'scikit-learn 1.2, measured',
    },
    { method: 'frozen SBERT-NLI-base + logistic regression', accuracy: 89.0, note: 'SentEval, published' },
    { method: 'fully fine-tuned BERT-base', accuracy: [92.4, 93.2], note: 'published, GLUE dev' },
  ],
  'sms-spam': [
    {
      method: 'TF-IDF 1-2 gram + LogisticRegression(C=10)',
      accuracy: 97.85,
      macroF1: 95.6,
      note: 'scikit-learn 1.2, measured',
    },
  ],
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
  const found = REFERENCES[dataset]?.find((r) => r.method.startsWith('TF-IDF'));
  return typeof found?.accuracy === 'number' ? found.accuracy : undefined;
}

/** "89.48" or "92.4–93.2". */
export function formatReferenceAccuracy(reference: Reference): string {
  const { accuracy } = reference;
  return typeof accuracy === 'number' ? accuracy.toFixed(2) : `${accuracy[0]}–${accuracy[1]}`;
}
