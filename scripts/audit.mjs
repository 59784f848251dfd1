// `npm audit --omit=dev` as a gate: fails on high or critical advisories in the runtime dependencies, and says
// plainly (without failing) when the registry's audit endpoint cannot be reached from this machine.
import { spawnSync } from 'node:child_process';

const run = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8' });
let report;
try {
  report = JSON.parse(run.stdout);
} catch {
  console.log(`npm audit: no report (exit ${run.status}); skipped.`);
  process.exit(0);
}
const counts = report.metadata?.vulnerabilities;
if (!counts) {
  console.log(
    `npm audit: the audit endpoint answered ${report.statusCode ?? '?'} (${report.message ?? 'no message'}); skipped.`,
  );
  process.exit(0);
}
const serious = (counts.high ?? 0) + (counts.critical ?? 0);
console.log(`npm audit --omit=dev: ${JSON.stringify(counts)}`);
process.exit(serious > 0 ? 1 : 0);
