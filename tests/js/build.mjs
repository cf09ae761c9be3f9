// Usage: node build.mjs <outfile>: bundles web-entry.js for the browser.
import { build } from 'esbuild';

await build({
  entryPoints: [new URL('./web-entry.js', import.meta.url).pathname],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome100',
  outfile: process.argv[2],
  logLevel: 'error',
});
