import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface ChildServer {
  url: string;
  pid: number;
  process: ChildProcess;
  /** Resident set size of the server process now, in bytes (Linux /proc). */
  rss(): number;
  /** Peak resident set size of the server process so far, in bytes (Linux /proc). */
  peakRss(): number;
  stop(): Promise<void>;
}

/**
 * Starts a Graft server in its own process, so that its memory and CPU are its own: by default the real front
 * door (`npm start`'s entry point), or `script` with `args`. Resolves once it prints the URL it listens on.
 */
export function startChildServer({
  env = {},
  script = 'functions/local/server.ts',
  args = [],
  timeoutMs = 30_000,
}: {
  env?: Record<string, string>;
  script?: string;
  args?: string[];
  timeoutMs?: number;
} = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', GRAFT_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stderr?.on('data', collect);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not start in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${signal ?? code}) before it listened:\n${output}`));
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      collect(chunk);
      const url = /running at (http:\/\/[^\s]+)/.exec(output)?.[1];
      if (!url || !child.pid) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      const pid = child.pid;
      resolve({
        url,
        pid,
        process: child,
        rss: () => procStatus(pid, 'VmRSS'),
        peakRss: () => procStatus(pid, 'VmHWM'),
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
          }),
      });
    });
  });
}

/** A memory figure of a process from /proc/<pid>/status, in bytes. */
export function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
  if (!kb) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kb) * 1024;
}
