import type { SoftmaxHead, SparseGradient } from './softmax-head.js';

export interface AdamWOptions {
  learningRate: number;
  /** Decoupled weight decay (Loshchilov & Hutter): w <- w - lr * weightDecay * w each step; biases are not decayed. */
  weightDecay: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

/**
 * What both optimisers share: the settings, the step count, and the Adam step of the biases (never decayed).
 * `begin()` counts a step and gives its bias-corrected step size and second-moment correction.
 */
abstract class AdamWBase {
  learningRate: number;
  readonly weightDecay: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  step = 0;
  readonly bias: Float32Array;
  readonly #mBias: Float64Array;
  readonly #vBias: Float64Array;

  constructor(bias: Float32Array, options: AdamWOptions) {
    const { learningRate, weightDecay, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8 } = options;
    this.learningRate = learningRate;
    this.weightDecay = weightDecay;
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.epsilon = epsilon;
    this.bias = bias;
    this.#mBias = new Float64Array(bias.length);
    this.#vBias = new Float64Array(bias.length);
  }

  /** Counts a step: its `lr / (1 - beta1^t)` and `1 / (1 - beta2^t)`. */
  protected begin(): { stepSize: number; vCorrection: number } {
    const t = ++this.step;
    return { stepSize: this.learningRate / (1 - this.beta1 ** t), vCorrection: 1 / (1 - this.beta2 ** t) };
  }

  /** The Adam step of the biases (no weight decay). */
  protected updateBias(gradBias: ArrayLike<number>, stepSize: number, vCorrection: number): void {
    const { beta1, beta2, epsilon } = this;
    const b = this.bias;
    for (let c = 0; c < b.length; c++) {
      const g = gradBias[c] as number;
      const mi = beta1 * (this.#mBias[c] as number) + (1 - beta1) * g;
      const vi = beta2 * (this.#vBias[c] as number) + (1 - beta2) * g * g;
      this.#mBias[c] = mi;
      this.#vBias[c] = vi;
      b[c] = (b[c] as number) - (stepSize * mi) / (Math.sqrt(vi * vCorrection) + epsilon);
    }
  }
}

/**
 * AdamW for a softmax head with sparse gradients, in PyTorch's order: decay, moments, bias-corrected step.
 * A weight row whose feature is absent from a batch is not touched that step (as PyTorch's `SparseAdam`):
 * its moments wait, and the weight decay it missed is applied, exactly (through the running sum of
 * ln(1 - lr_t * weightDecay), so the learning rate may change between steps), when it is next touched or at
 * `flush()`. When every row has a gradient this is AdamW to the letter; the saving on hashed text is the
 * dims x classes pass per step that dense AdamW would make.
 */
export class SparseAdamW extends AdamWBase {
  readonly head: SoftmaxHead;
  readonly #m: Float32Array;
  readonly #v: Float32Array;
  /** sum over steps so far of ln(1 - lr_t * weightDecay): the log of the decay every weight is owed. */
  #logDecay = 0;
  /** `#logDecay` as of the last time row j's weight decay was applied. */
  readonly #decayedTo: Float64Array;

  constructor(head: SoftmaxHead, options: AdamWOptions) {
    super(head.bias, options);
    this.head = head;
    this.#m = new Float32Array(head.weights.length);
    this.#v = new Float32Array(head.weights.length);
    this.#decayedTo = new Float64Array(head.dims);
  }

  /** One update from the gradient of a batch. */
  update(grad: SparseGradient): void {
    const { stepSize, vCorrection } = this.begin();
    const { learningRate: lr, beta1, beta2, epsilon } = this;
    const C = this.head.classes;
    const W = this.head.weights;
    const m = this.#m;
    const v = this.#v;
    this.#logDecay += Math.log1p(-lr * this.weightDecay);
    const logDecay = this.#logDecay;
    const decayedTo = this.#decayedTo;
    for (let k = 0; k < grad.count; k++) {
      const j = grad.rows[k] as number;
      const offset = (grad.slotOf[j] as number) * C;
      const base = j * C;
      // The decay of every step since this row was last touched, this step's own included.
      const owed = logDecay - (decayedTo[j] as number);
      const factor = owed === 0 ? 1 : Math.exp(owed);
      decayedTo[j] = logDecay;
      for (let c = 0; c < C; c++) {
        const g = grad.values[offset + c] as number;
        const mi = beta1 * (m[base + c] as number) + (1 - beta1) * g;
        const vi = beta2 * (v[base + c] as number) + (1 - beta2) * g * g;
        m[base + c] = mi;
        v[base + c] = vi;
        W[base + c] =
          (W[base + c] as number) * factor - (stepSize * mi) / (Math.sqrt(vi * vCorrection) + epsilon);
      }
    }
    this.updateBias(grad.bias, stepSize, vCorrection);
  }

  /** Applies the weight decay every untouched row is owed, so `head` holds the weights as of this step. */
  flush(): void {
    const logDecay = this.#logDecay;
    const C = this.head.classes;
    const W = this.head.weights;
    const decayedTo = this.#decayedTo;
    for (let j = 0; j < this.head.dims; j++) {
      const owed = logDecay - (decayedTo[j] as number);
      if (owed === 0) continue;
      decayedTo[j] = logDecay;
      const factor = Math.exp(owed);
      const base = j * C;
      for (let c = 0; c < C; c++) W[base + c] = (W[base + c] as number) * factor;
    }
  }
}

/**
 * AdamW for a dense parameter block (PyTorch's order, as `SparseAdamW` when every row has a gradient): decoupled
 * weight decay on the weights, none on the biases, then the bias-corrected Adam step.
 */
export class DenseAdamW extends AdamWBase {
  readonly weights: Float32Array;
  readonly #m: Float32Array;
  readonly #v: Float32Array;

  constructor(weights: Float32Array, bias: Float32Array, options: AdamWOptions) {
    super(bias, options);
    this.weights = weights;
    this.#m = new Float32Array(weights.length);
    this.#v = new Float32Array(weights.length);
  }

  /** One update from the gradients of a batch (same layouts as `weights` and `bias`). */
  update(gradWeights: ArrayLike<number>, gradBias: ArrayLike<number>): void {
    const { stepSize, vCorrection } = this.begin();
    const { learningRate: lr, beta1, beta2, epsilon } = this;
    const decay = 1 - lr * this.weightDecay;
    const W = this.weights;
    const m = this.#m;
    const v = this.#v;
    for (let i = 0; i < W.length; i++) {
      const g = gradWeights[i] as number;
      const mi = beta1 * (m[i] as number) + (1 - beta1) * g;
      const vi = beta2 * (v[i] as number) + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      W[i] = (W[i] as number) * decay - (stepSize * mi) / (Math.sqrt(vi * vCorrection) + epsilon);
    }
    this.updateBias(gradBias, stepSize, vCorrection);
  }
}
