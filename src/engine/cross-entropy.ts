/**
 * One row of the class-weighted softmax cross-entropy of a batch, the loss every trained head minimises.
 * Returns `w * -log softmax(z)[y]` for the logits `z = logits[offset, offset + classes)`, and writes into
 * `out[offset, offset + classes)` that row's share of the gradient of the batch mean,
 * `dL/dz = w / batch * (softmax(z) - onehot(y))` (zeros when `gradient` is false). `out` may be `logits`.
 */
export function crossEntropyRow(
  logits: ArrayLike<number>,
  out: Float64Array,
  offset: number,
  classes: number,
  y: number,
  w: number,
  batch: number,
  gradient: boolean,
): number {
  let max = -Infinity;
  for (let c = 0; c < classes; c++)
    if ((logits[offset + c] as number) > max) max = logits[offset + c] as number;
  let sum = 0;
  for (let c = 0; c < classes; c++) {
    const e = Math.exp((logits[offset + c] as number) - max);
    out[offset + c] = e;
    sum += e;
  }
  // out holds exp(z - max): p = out / sum.
  const loss = w * (Math.log(sum) - Math.log(out[offset + y] as number));
  const scale = gradient ? w / (batch * sum) : 0;
  for (let c = 0; c < classes; c++) out[offset + c] = (out[offset + c] as number) * scale;
  if (gradient) out[offset + y] = (out[offset + y] as number) - w / batch;
  return loss;
}
