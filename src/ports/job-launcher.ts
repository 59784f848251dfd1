/**
 * Starts the training of one job: AWS Batch `SubmitJob` in AWS, the in-process worker locally. Launching the same
 * job twice is safe: the worker is idempotent by job id.
 */
export interface JobLauncher {
  launch(jobId: string): Promise<void>;
}
