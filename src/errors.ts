/**
 * Every failure a user can meet has a stable code. The code decides the HTTP status (one table, here) and is
 * what a failed job records, so a message can always say what was wrong and how to fix it.
 */
export const STATUS_BY_CODE = {
  BAD_REQUEST: 400,
  INVALID_NAME: 400,
  INVALID_JSON: 400,
  INVALID_OPTIONS: 400,
  INVALID_DATASET: 422,
  DATASET_TOO_SMALL: 422,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  UPLOAD_URL_INVALID: 403,
  UPLOAD_URL_EXPIRED: 403,
  NOT_FOUND: 404,
  TASK_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  DATASET_NOT_FOUND: 404,
  BACKBONE_NOT_FOUND: 404,
  KEY_NOT_FOUND: 404,
  OBJECT_NOT_FOUND: 404,
  NO_MODEL: 409,
  CONFLICT: 409,
  JOB_NOT_CANCELLABLE: 409,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TRAINING_FAILED: 500,
  PARITY_CHECK_FAILED: 500,
  /** A job whose queue message was given up on (dead-lettered) before any delivery finished it. */
  DELIVERIES_EXHAUSTED: 500,
  /** A job whose trainer AWS Batch stopped for good (out of memory, past its timeout, its last attempt failed). */
  TRAINER_STOPPED: 500,
  INTERNAL: 500,
  STORAGE_UNAVAILABLE: 503,
  QUEUE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof STATUS_BY_CODE;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export class GraftError extends Error {
  override readonly name = 'GraftError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return STATUS_BY_CODE[this.code];
  }

  toJSON(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.details) error.details = this.details;
    return { error };
  }
}

/** Wraps anything thrown into a GraftError, keeping the original as `cause`. */
export function toGraftError(err: unknown): GraftError {
  if (err instanceof GraftError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new GraftError('INTERNAL', `Unexpected error: ${message}`, { cause: err });
}

export function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof GraftError && err.code === code;
}
