import type { JobQueue } from '../ports/job-queue.js';
import type { ObjectStore } from '../ports/object-store.js';
import type { Logger } from './logger.js';

/** What the core needs from its home: the same shape locally and in AWS. */
export interface CoreDeps {
  store: ObjectStore;
  queue: JobQueue;
  log: Logger;
  /** Injectable clock for tests. */
  now?: () => Date;
}

export function nowIso(deps: Pick<CoreDeps, 'now'>): string {
  return (deps.now?.() ?? new Date()).toISOString();
}
