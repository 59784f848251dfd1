import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pruneOnnxRuntime } from '../cdk/scripts/prune-onnxruntime.mjs';

const BUILDS = ['darwin/arm64', 'linux/arm64', 'linux/x64', 'win32/arm64', 'win32/x64'];
const dirs: string[] = [];

/** A node_modules with onnxruntime-node laid out as the npm package ships it (tiny files). */
function fakeInstall(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'graft-ort-'));
  dirs.push(root);
  const pkg = path.join(root, 'node_modules', 'onnxruntime-node');
  for (const build of BUILDS) {
    const dir = path.join(pkg, 'bin', 'napi-v6', build);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'onnxruntime_binding.node'), build);
  }
  mkdirSync(path.join(pkg, 'dist'), { recursive: true });
  writeFileSync(path.join(pkg, 'dist', 'index.js'), '');
  return path.join(root, 'node_modules');
}

function bytesUnder(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? bytesUnder(full) : statSync(full).size;
  }
  return total;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('prune-onnxruntime (the Lambda bundling afterBundling hook)', () => {
  it('keeps only the target platform and drops emptied platform folders', () => {
    // given
    const nodeModules = fakeInstall();
    // when
    const { kept, removed } = pruneOnnxRuntime(nodeModules, 'linux', 'arm64');
    // then
    expect(kept).toEqual([path.join('bin', 'napi-v6', 'linux', 'arm64')]);
    expect(removed).toHaveLength(4);
    const bin = path.join(nodeModules, 'onnxruntime-node', 'bin', 'napi-v6');
    expect(readdirSync(bin)).toEqual(['linux']);
    expect(readdirSync(path.join(bin, 'linux'))).toEqual(['arm64']);
    expect(readdirSync(path.join(nodeModules, 'onnxruntime-node', 'dist'))).toEqual(['index.js']);
  });

  it('runs as the command the bundling hook calls', () => {
    // given
    const nodeModules = fakeInstall();
    // when
    execFileSync(process.execPath, ['cdk/scripts/prune-onnxruntime.mjs', nodeModules, 'linux', 'x64'], {
      stdio: 'pipe',
    });
    // then
    expect(readdirSync(path.join(nodeModules, 'onnxruntime-node', 'bin', 'napi-v6', 'linux'))).toEqual([
      'x64',
    ]);
  });

  it('fails loudly when the platform has no build or the package is missing', () => {
    expect(() => pruneOnnxRuntime(fakeInstall(), 'linux', 'riscv64')).toThrow(
      /no binaries for linux\/riscv64/,
    );
    expect(() => pruneOnnxRuntime(path.join(tmpdir(), 'no-such-dir'), 'linux', 'x64')).toThrow(
      /not installed/,
    );
  });

  it('leaves what fits a 60 MB Lambda asset: the installed package, measured per platform', () => {
    // given: the package as npm installed it here (all platforms)
    const pkg = path.join('node_modules', 'onnxruntime-node');
    const all = bytesUnder(pkg);
    const builds = path.join(pkg, 'bin', 'napi-v6');
    const perBuild = Object.fromEntries(BUILDS.map((build) => [build, bytesUnder(path.join(builds, build))]));
    const shared = all - Object.values(perBuild).reduce((a, b) => a + b, 0);
    // when: what pruning leaves for each Lambda architecture
    const arm64 = shared + (perBuild['linux/arm64'] ?? 0);
    const x64 = shared + (perBuild['linux/x64'] ?? 0);
    // then
    const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
    console.info(
      `onnxruntime-node: all ${mib(all)} MiB, linux-arm64 ${mib(arm64)} MiB, linux-x64 ${mib(x64)} MiB`,
    );
    expect(arm64).toBeLessThan(30 * 1024 * 1024);
    expect(x64).toBeLessThan(50 * 1024 * 1024);
  });
});
