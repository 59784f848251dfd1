// The `graft` command-line tool.
import { runCli } from '../../src/cli/cli.js';
import { loadCliConfig } from '../../src/config.js';

process.exitCode = await runCli(process.argv.slice(2), {
  config: loadCliConfig(),
  stdout: process.stdout,
  stderr: process.stderr,
});
