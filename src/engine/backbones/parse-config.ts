import type { z } from 'zod';
import { GraftError } from '../../errors.js';

/**
 * Validates a backbone configuration against its schema; throws INVALID_OPTIONS naming each wrong field, in the
 * message and in `details.issues`. `what` names the configuration: "backbone", "text backbone"...
 */
export function parseConfig<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issues = result.error.issues
      .map((i) => `${i.path.join('.') || 'backbone'}: ${i.message}`)
      .join('; ');
    throw new GraftError('INVALID_OPTIONS', `Invalid ${what} configuration (${issues}).`, {
      details: { issues: result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
    });
  }
  return result.data;
}
