import { type BackboneConfig, HASH_NGRAMS } from '../engine/index.js';
import { GraftError } from '../errors.js';
import type { CoreDeps } from './deps.js';

const BUILT_IN: Record<string, BackboneConfig> = { [HASH_NGRAMS.name]: HASH_NGRAMS };

/** The backbones a task or `/v1/embeddings` can name. */
export async function listBackbones(_deps: CoreDeps): Promise<BackboneConfig[]> {
  return Object.values(BUILT_IN);
}

export async function resolveBackbone(_deps: CoreDeps, name: string): Promise<BackboneConfig> {
  const backbone = BUILT_IN[name];
  if (!backbone) {
    throw new GraftError(
      'BACKBONE_NOT_FOUND',
      `Backbone "${name.slice(0, 80)}" is not known. Available: ${Object.keys(BUILT_IN).join(', ')}.`,
    );
  }
  return backbone;
}
