import { z } from 'zod';

/** What travels on the job queue: shared by the producer (API), the local consumer, the dispatcher and the trainer. */
export const JobMessageSchema = z.object({
  type: z.literal('train'),
  jobId: z.string(),
});
export type JobMessage = z.infer<typeof JobMessageSchema>;

export interface ReceivedMessage {
  /** Stable id of the message across deliveries. */
  messageId: string;
  /** Handle for this delivery: pass it to delete / extendVisibility. */
  receiptHandle: string;
  /** The raw body; parse with JobMessageSchema (S3 event notifications share the AWS queue). */
  body: string;
  /** 1 on first delivery. */
  receiveCount: number;
}

export interface ReceiveOptions {
  maxMessages?: number;
  /** How long a received message stays invisible to other consumers. */
  visibilityTimeoutMs?: number;
  /** Long-poll: wait up to this long for a message when none is visible. */
  waitMs?: number;
}

/**
 * A queue with SQS semantics: at-least-once delivery, a visibility timeout, a receive count, and a dead-letter
 * queue after `maxReceives` deliveries that were not deleted.
 */
export interface JobQueue {
  send(message: JobMessage): Promise<{ messageId: string }>;
  receive(options?: ReceiveOptions): Promise<ReceivedMessage[]>;
  delete(receiptHandle: string): Promise<void>;
  extendVisibility(receiptHandle: string, visibilityTimeoutMs: number): Promise<void>;
}
