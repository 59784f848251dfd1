// The AWS Batch trainer's main: runs one job (GRAFT_JOB_ID) with the same worker as local mode, then exits
// 0 (done), 1 (retry the attempt) or 2 (the job failed for good; its record says why).
import { runTrainer, trainerInputFromEnv } from '../../src/adapters/aws/trainer.js';
import { TRAINER_EXIT } from '../../src/adapters/aws/trainer-contract.js';
import { loadAwsConfig } from '../../src/config.js';

let code: number;
try {
  code = await runTrainer(loadAwsConfig(), trainerInputFromEnv(process.env));
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  code = TRAINER_EXIT.failed;
}
process.exit(code);
