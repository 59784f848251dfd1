import { GraftError } from './errors.js';

/** Names that become part of an object key: tasks, datasets, model versions, backbones, key ids. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Returns `value` when it is a safe name, otherwise throws INVALID_NAME saying what a name may hold. */
export function checkName(value: string, what = 'name'): string {
  if (!NAME_PATTERN.test(value)) {
    const shown = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
    throw new GraftError(
      'INVALID_NAME',
      `Invalid ${what} ${shown}: use 1-63 characters of lowercase letters, digits and '-', starting with a letter or digit (for example "support-intents").`,
      { details: { [what]: value.slice(0, 200) } },
    );
  }
  return value;
}
