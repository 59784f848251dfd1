// `npm start`: the whole platform on one machine.
import { startLocalPlatform } from '../../src/adapters/local/platform.js';
import { loadLocalConfig } from '../../src/config.js';

const config = loadLocalConfig();
const platform = await startLocalPlatform(config, {
  onAdminKeyCreated: (key, file) =>
    console.log(`\nCreated an admin API key (kept in ${file}; shown only now):\n\n  ${key}\n`),
});
console.log(`Graft is running at ${platform.url}  (data: ${config.dataDir})`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void platform.close().then(() => process.exit(0)));
}
