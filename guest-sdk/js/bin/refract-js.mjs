#!/usr/bin/env node
// refract-js: builds a TypeScript or JavaScript plugin into a component
// and runs its tests in Node.
//
//   refract-js build DIR [-o OUT.wasm]   DIR/src/index.ts (or .js) → component
//   refract-js test DIR...               runs every *.test.ts / *.test.js
//
// Both type-check the project first when a tsconfig.json is at or above it.
//
// A plugin imports `refract-sdk` (and `refract-sdk/testing` in tests);
// both resolve to this SDK, so a plugin needs no node_modules of its own.

import { build as esbuild } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wit = process.env.REFRACT_WIT ?? resolve(sdk, '..', '..', 'wit');
const alias = {
  'refract-sdk/testing': join(sdk, 'src', 'testing.ts'),
  'refract-sdk': join(sdk, 'src', 'index.ts'),
};

function fail(message) {
  console.error(`refract-js: ${message}`);
  process.exit(1);
}

function entryOf(dir) {
  for (const name of ['src/index.ts', 'src/index.js', 'index.ts', 'index.js']) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  fail(`${dir} has no src/index.ts, src/index.js, index.ts or index.js`);
}

async function bundle(entryPoint, outfile, external = []) {
  await esbuild({
    entryPoints: [entryPoint],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    alias,
    external,
    mainFields: ['module', 'main'],
    logLevel: 'error',
  });
}

/** componentize-js features left out: by default its HTTP client and
 *  server (a plugin reaches nothing outside its sandbox; the host refuses
 *  every request anyway). `"refract": {"disableFeatures": [...]}` in the
 *  plugin's package.json says otherwise. */
function disabledFeatures(dir) {
  const manifest = join(dir, 'package.json');
  if (existsSync(manifest)) {
    const features = JSON.parse(readFileSync(manifest, 'utf8')).refract?.disableFeatures;
    if (features !== undefined) {
      if (!Array.isArray(features)) fail(`${manifest}: refract.disableFeatures must be a list`);
      return features;
    }
  }
  return ['http', 'fetch-event'];
}

/** The nearest tsconfig.json at or above `path`, if any. */
function tsconfigOf(path) {
  let dir = statSync(path).isDirectory() ? path : dirname(path);
  for (;;) {
    const p = join(dir, 'tsconfig.json');
    if (existsSync(p)) return p;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** Type-checks the project of `tsconfig` with the SDK's TypeScript. */
function typecheck(tsconfig) {
  const tsc = join(sdk, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', tsconfig], { stdio: 'inherit' });
  if (r.status !== 0) fail(`type errors in the project of ${tsconfig}`);
}

async function build(dir, out) {
  dir = resolve(dir);
  const entry = entryOf(dir);
  const tsconfig = tsconfigOf(dir);
  if (tsconfig && entry.endsWith('.ts')) typecheck(tsconfig);
  const work = mkdtempSync(join(tmpdir(), 'refract-js-'));
  try {
    // The plugin alone, to read its kind natively.
    const native = join(work, 'native.mjs');
    await bundle(entry, native);
    const plugin = (await import(pathToFileURL(native).href)).default;
    // Per kind: its world, the export, and the SDK's adapter (module and
    // function); a projection's adapter alone imports `sql`.
    const worlds = {
      projection: ['projection', 'projector', 'guest-projection.ts', 'projectorExport'],
      'command-handler': ['command-handler', 'decider', 'guest.ts', 'deciderExport'],
      reactor: ['process-manager', 'reactor', 'guest-projection.ts', 'reactorExport'],
      upcaster: ['upcaster', 'upcast', 'guest.ts', 'upcastExport'],
    };
    if (!plugin || !Object.hasOwn(worlds, plugin.kind)) {
      fail(`${entry} must export default defineProjection, defineHandler, defineReactor or defineUpcaster({...})`);
    }
    const [world, exportName, module, adapter] = worlds[plugin.kind];
    const wrapper = join(work, 'component.ts');
    writeFileSync(
      wrapper,
      `import plugin from ${JSON.stringify(entry)};\n` +
        `import { ${adapter} } from ${JSON.stringify(join(sdk, 'src', module))};\n` +
        `export const ${exportName} = ${adapter}(plugin as any);\n`,
    );
    const source = join(work, 'component.js');
    await bundle(wrapper, source, ['refract:plugin/*']);
    const { componentize } = await import('@bytecodealliance/componentize-js');
    const { component } = await componentize({
      sourcePath: source,
      witPath: wit,
      worldName: world,
      disableFeatures: disabledFeatures(dir),
    });
    out = resolve(out ?? join(dir, `${basename(dir)}.wasm`));
    writeFileSync(out, component);
    console.log(`built ${plugin.kind} ${plugin.name} → ${out} (${(component.length / 1048576).toFixed(1)} MiB)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function testFiles(path) {
  if (statSync(path).isFile()) return [path];
  const out = [];
  for (const name of readdirSync(path)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(path, name);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (/\.test\.[cm]?[tj]s$/.test(name)) out.push(p);
  }
  return out;
}

async function test(paths) {
  const files = paths.flatMap((p) => testFiles(resolve(p)));
  if (files.length === 0) fail(`no *.test.ts or *.test.js under ${paths.join(', ')}`);
  const projects = new Set(paths.map((p) => tsconfigOf(resolve(p))).filter(Boolean));
  for (const tsconfig of projects) typecheck(tsconfig);
  // Inside the SDK, so the bundles resolve sql.js from its node_modules.
  const cache = join(sdk, 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const work = mkdtempSync(join(cache, 'refract-js-test-'));
  try {
    const bundled = [];
    for (const [i, f] of files.entries()) {
      const out = join(work, `${i}-${basename(f).replace(/\.[cm]?[tj]s$/, '')}.mjs`);
      // Node's own modules and sql.js stay outside the bundle.
      await esbuild({
        entryPoints: [f],
        outfile: out,
        bundle: true,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        alias,
        external: ['sql.js'],
        logLevel: 'error',
      });
      bundled.push(out);
    }
    const r = spawnSync(process.execPath, ['--test', ...bundled], {
      stdio: 'inherit',
    });
    process.exitCode = r.status ?? 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const [command, ...args] = process.argv.slice(2);
if (command === 'build') {
  const o = args.indexOf('-o');
  const out = o >= 0 ? args[o + 1] : undefined;
  const dirs = args.filter((_, i) => i !== o && i !== o + 1);
  if (dirs.length !== 1) fail('usage: refract-js build DIR [-o OUT.wasm]');
  await build(dirs[0], out);
} else if (command === 'test') {
  if (args.length === 0) fail('usage: refract-js test DIR|FILE...');
  await test(args);
} else {
  fail('usage: refract-js build DIR [-o OUT.wasm] | refract-js test DIR|FILE...');
}
