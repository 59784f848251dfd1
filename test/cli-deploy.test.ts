import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/cli.js';

function io(exitCode: number) {
  const runs: { command: string; args: string[]; cwd: string }[] = [];
  const err: string[] = [];
  return {
    runs,
    err,
    io: {
      config: { url: 'http://127.0.0.1:1', apiKey: undefined, dataDir: '/nonexistent' },
      stdout: { write: () => true },
      stderr: { write: (text: string) => err.push(text) },
      run: async (command: string, args: string[], { cwd }: { cwd: string }) => {
        runs.push({ command, args, cwd });
        return exitCode;
      },
    },
  };
}

describe('graft deploy', () => {
  it('runs npx cdk deploy in the checkout with the context flags and the options after --', async () => {
    // given
    const ctx = io(0);
    // when
    const code = await runCli(
      ['deploy', '-c', 'graft:gpu=false', '-c', 'graft:maxVcpus=8', '--', '--require-approval', 'never'],
      ctx.io,
    );
    // then
    expect(code).toBe(0);
    expect(ctx.runs).toEqual([
      {
        command: 'npx',
        args: [
          'cdk',
          'deploy',
          '-c',
          'graft:gpu=false',
          '-c',
          'graft:maxVcpus=8',
          '--require-approval',
          'never',
        ],
        cwd: expect.any(String),
      },
    ]);
    expect(existsSync(path.join(ctx.runs[0]?.cwd ?? '', 'cdk.json'))).toBe(true);
    expect(ctx.err.join('')).toContain('running: npx cdk deploy -c graft:gpu=false');
  });

  it("exits with cdk's exit code", async () => {
    const ctx = io(3);
    expect(await runCli(['deploy'], ctx.io)).toBe(3);
    expect(ctx.runs[0]?.args).toEqual(['cdk', 'deploy']);
  });
});
