/**
 * What the AWS adapters need to know about an SDK failure: its error name, its HTTP status, and whether trying
 * again later could succeed. The SDK's own exception classes differ per client; these fields are common to all.
 */
export interface AwsFailure {
  name: string;
  status: number | undefined;
  transient: boolean;
  message: string;
}

const THROTTLING_NAMES = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'TransactionInProgressException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'LimitExceededException',
  'RequestThrottled',
  'SlowDown',
  'PriorRequestNotComplete',
  'EC2ThrottledException',
  'RequestTimeout',
  'RequestTimeoutException',
  'ServiceUnavailable',
  'InternalError',
  'InternalFailure',
]);

// Node's socket-level failures: the request never got an HTTP answer.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function field(err: unknown, name: string): unknown {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>)[name] : undefined;
}

/** Classifies anything an AWS SDK v3 client threw. */
export function describeAwsFailure(err: unknown): AwsFailure {
  const name = typeof field(err, 'name') === 'string' ? (field(err, 'name') as string) : 'Error';
  const metadata = field(err, '$metadata');
  const rawStatus = field(metadata, 'httpStatusCode');
  const status = typeof rawStatus === 'number' ? rawStatus : undefined;
  const code = field(err, 'code');
  const message = err instanceof Error ? err.message : String(err);
  const transient =
    field(err, '$retryable') !== undefined ||
    (status !== undefined && (status >= 500 || status === 429)) ||
    THROTTLING_NAMES.has(name) ||
    name === 'TimeoutError' ||
    (typeof code === 'string' && NETWORK_CODES.has(code)) ||
    // A socket error surfaces with no HTTP status at all.
    (status === undefined && field(err, '$fault') === undefined && /socket|network|connect/i.test(message));
  return { name, status, transient, message };
}
