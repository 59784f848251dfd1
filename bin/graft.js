#!/usr/bin/env node
// `graft` when installed with `npm link` / `npm install -g`: runs the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('../functions/cli/main.ts');
