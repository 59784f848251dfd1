// A local Graft server for the bench, in its own process: `node --import tsx bench/serve.ts`, configured by
// GRAFT_DATA_DIR, GRAFT_API_KEY, BENCH_WORKER (on|off) and BENCH_MICRO_BATCH (off, or the window in ms).
// Prints "Graft is running at <url>" like `npm start`.
import { startLocalPlatform } from '../src/adapters/local/platform.js';
import { loadLocalConfig } from '../src/config.js';

const batching = process.env.BENCH_MICRO_BATCH ?? '0';
const platform = await startLocalPlatform(loadLocalConfig(), {
  worker: process.env.BENCH_WORKER !== 'off',
  microBatch: batching === 'off' ? false : { maxWaitMs: Number(batching) },
});
console.log(`Graft is running at ${platform.url}`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void platform.close().then(() => process.exit(0)));
}
