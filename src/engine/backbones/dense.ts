import type { InputTensor } from '../../runtime/onnx.js';

/** The name of the output every dense backbone graph gives: [N, dims] float32 features. */
export const FEATURES_OUTPUT = 'features';

/**
 * A frozen feature extractor whose computation is an ONNX graph: text (tokenizer in TypeScript, transformer +
 * pooling in the graph) or image (decoding and normalisation in TypeScript, a CNN cut at a feature tensor in the
 * graph). A head is grafted onto `graph` at `features`, so one ONNX file holds backbone, pooling and head.
 */
export interface DenseBackbone<Input> {
  /** Serialisable settings that rebuild `prepare` (stored in the exported model's metadata). */
  readonly config: { kind: string; name: string; dims: number };
  /** Width of the feature vector. */
  readonly dims: number;
  /** ONNX model bytes: inputs are what `prepare` feeds, one output `features` [N, dims] float32. */
  readonly graph: Uint8Array;
  /** Turns a batch of raw inputs into the graph's named input tensors (padding, truncation, resizing...). */
  prepare(inputs: readonly Input[]): Record<string, InputTensor>;
}
