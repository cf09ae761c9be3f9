// Bundled by esbuild into one browser script: window.Descope.createSdk.
import createSdk from '@descope/web-js-sdk';

window.Descope = { createSdk };
