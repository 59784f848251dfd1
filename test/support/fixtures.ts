import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect } from 'vitest';
import { GraftError } from '../../src/errors.js';

/** A temporary directory removed after the test file. */
export async function tempDir(prefix = 'graft-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The GraftError `promise` rejects with (the test fails when it resolves, or rejects with anything else). */
export async function rejection(promise: Promise<unknown>): Promise<GraftError> {
  const err = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(err).toBeInstanceOf(GraftError);
  return err as GraftError;
}

const VOCAB: Record<string, string[]> = {
  weather: ['rain', 'sunny', 'cloudy', 'forecast', 'storm', 'snow', 'wind', 'temperature', 'humid', 'fog'],
  sports: ['match', 'goal', 'team', 'score', 'league', 'coach', 'player', 'stadium', 'referee', 'season'],
  finance: ['stock', 'market', 'bank', 'interest', 'loan', 'shares', 'profit', 'invest', 'bond', 'dividend'],
  food: ['recipe', 'pasta', 'bake', 'spicy', 'dinner', 'sauce', 'oven', 'salad', 'flavour', 'dessert'],
};
const FILLER = ['the', 'a', 'today', 'really', 'about', 'this', 'that', 'some', 'very', 'news'];

/** A small, deterministic, learnable text dataset: each label has its own vocabulary plus shared filler words. */
export function makeTextDataset({ labels = ['weather', 'sports', 'finance'], perLabel = 12, seed = 1 } = {}) {
  let state = seed >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  const pick = (words: string[]) => words[Math.floor(random() * words.length)] ?? '';
  const rows: { text: string; label: string }[] = [];
  for (let i = 0; i < perLabel; i++) {
    for (const label of labels) {
      const words = VOCAB[label] ?? [label];
      const text = [pick(FILLER), pick(words), pick(FILLER), pick(words), pick(words), `#${i}`].join(' ');
      rows.push({ text, label });
    }
  }
  return rows;
}

export const toJsonl = (rows: object[]) => `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`;

/** Where the shared datasets live when this checkout has them beside it (CI always does). */
export const SHARED_DIR = path.resolve(import.meta.dirname, '../../../shared');
export const hasShared = existsSync(path.join(SHARED_DIR, 'datasets'));
