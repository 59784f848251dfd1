// Keeps only the native binaries of one platform in an installed onnxruntime-node (the npm package ships
// darwin, linux and win32 builds: 288 MB in all). Runs as the Lambda bundling's afterBundling hook, on the
// host or in the bundling container, so it is plain Node with no dependencies.
//
//   node prune-onnxruntime.mjs <node_modules dir> <platform> <arch>     e.g. ... /asset-output/node_modules linux arm64
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Deletes every `bin/napi-v*\/{platform}/{arch}` folder of onnxruntime-node except the one given.
 * @param {string} nodeModules the node_modules folder that holds onnxruntime-node
 * @param {string} platform e.g. 'linux'
 * @param {string} arch e.g. 'arm64' or 'x64'
 * @returns {{ kept: string[]; removed: string[] }} paths relative to the package
 */
export function pruneOnnxRuntime(nodeModules, platform, arch) {
  const pkg = path.join(nodeModules, 'onnxruntime-node');
  const bin = path.join(pkg, 'bin');
  if (!existsSync(bin)) throw new Error(`onnxruntime-node is not installed under ${nodeModules}`);
  const kept = [];
  const removed = [];
  for (const napi of readdirSync(bin)) {
    for (const os of readdirSync(path.join(bin, napi))) {
      for (const cpu of readdirSync(path.join(bin, napi, os))) {
        const dir = path.join(bin, napi, os, cpu);
        if (!statSync(dir).isDirectory()) continue;
        const relative = path.relative(pkg, dir);
        if (os === platform && cpu === arch) kept.push(relative);
        else {
          rmSync(dir, { recursive: true, force: true });
          removed.push(relative);
        }
      }
      if (readdirSync(path.join(bin, napi, os)).length === 0)
        rmSync(path.join(bin, napi, os), { recursive: true });
    }
  }
  if (kept.length === 0) throw new Error(`onnxruntime-node has no binaries for ${platform}/${arch}`);
  return { kept, removed };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [nodeModules, platform, arch] = process.argv.slice(2);
  if (!nodeModules || !platform || !arch) {
    console.error('usage: node prune-onnxruntime.mjs <node_modules dir> <platform> <arch>');
    process.exit(2);
  }
  const { kept, removed } = pruneOnnxRuntime(nodeModules, platform, arch);
  console.error(`onnxruntime-node: kept ${kept.join(', ')}; removed ${removed.length} other platform builds`);
}
