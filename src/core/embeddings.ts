import { embedWith, tokenCount } from '../engine/index.js';
import { GraftError } from '../errors.js';
import { servedBackbone } from './backbones.js';
import type { CoreDeps } from './deps.js';

export interface EmbeddingsRequest {
  model: string;
  input: string | string[];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
}

/** `POST /v1/embeddings` in OpenAI's response shape. */
export async function embeddings(deps: CoreDeps, request: EmbeddingsRequest) {
  const backbone = await servedBackbone(deps, request.model);
  if (backbone.config.kind === 'image') {
    throw new GraftError(
      'BAD_REQUEST',
      `"${request.model}" is an image backbone; /v1/embeddings embeds texts.`,
    );
  }
  const texts = typeof request.input === 'string' ? [request.input] : request.input;
  const vectors = await embedWith(backbone, texts, { dimensions: request.dimensions });
  const tokens = texts.reduce((sum, text) => sum + tokenCount(backbone, text), 0);
  return {
    object: 'list' as const,
    data: vectors.map((vector, index) => ({
      object: 'embedding' as const,
      index,
      embedding:
        request.encoding_format === 'base64'
          ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64')
          : Array.from(vector),
    })),
    model: backbone.config.name,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}
