import { spawn } from 'node:child_process';
import path from 'node:path';
import type { CrashPlan } from './crash-worker.js';

const CHILD = path.resolve(import.meta.dirname, 'crash-worker.ts');

/**
 * Runs the crash worker (test/support/crash-worker.ts) once; resolves with how it ended and its stderr. A worker
 * still running after `timeoutMs` (some job never ends) is stopped with SIGTERM, which no kill point sends.
 */
export function runCrashWorker(dataDir: string, plan: CrashPlan, { timeoutMs = 60_000 } = {}) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, JSON.stringify(plan)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}
