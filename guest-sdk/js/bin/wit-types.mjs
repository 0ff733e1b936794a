#!/usr/bin/env node
// Generates the TypeScript declarations of the host's interfaces from
// wit/ (jco's type generator, given the WIT as text: its own file access
// cannot reach the directory) into src/wit/. `--check` fails when the
// checked-in files differ from what wit/ gives.

import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wit = process.env.REFRACT_WIT ?? resolve(sdk, '..', '..', 'wit');
const out = join(sdk, 'src', 'wit');
const check = process.argv.includes('--check');

const bindgen = await import(
  join(sdk, 'node_modules/@bytecodealliance/jco-transpile/vendor/js-component-bindgen-component.js')
);
if (bindgen.$init) await bindgen.$init;

// One package, its files joined under one `package` line.
const files = readdirSync(wit).filter((f) => f.endsWith('.wit')).sort();
let source = '';
for (const f of files) {
  const text = readFileSync(join(wit, f), 'utf8');
  const pkg = text.match(/^package [^;]+;/m);
  if (pkg && !source) source = pkg[0] + '\n';
  source += text.replace(/^package [^;]+;/m, '') + '\n';
}

const generated = new Map();
for (const world of ['projection', 'command-handler']) {
  const types = bindgen.generateTypes('refract', {
    wit: { tag: 'source', val: source },
    world,
    guest: true,
    tlaCompat: false,
    features: { tag: 'list', val: [] },
  });
  for (const [name, bytes] of types) {
    // Only the interfaces the SDK imports; the worlds' own files are not used.
    if (!name.startsWith('interfaces/')) continue;
    const file = name.slice('interfaces/'.length);
    generated.set(file, '// Generated from wit/ by bin/wit-types.mjs: do not edit.\n' + new TextDecoder().decode(bytes));
  }
}

if (check) {
  const stale = [];
  for (const [file, text] of generated) {
    const path = join(out, file);
    if (!existsSync(path) || readFileSync(path, 'utf8') !== text) stale.push(file);
  }
  const extra = existsSync(out) ? readdirSync(out).filter((f) => !generated.has(f)) : [];
  if (stale.length || extra.length) {
    console.error(`src/wit/ is not what wit/ gives (${[...stale, ...extra].join(', ')}); run node bin/wit-types.mjs`);
    process.exit(1);
  }
  console.log(`src/wit/ matches wit/ (${generated.size} files)`);
} else {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const [file, text] of generated) writeFileSync(join(out, file), text);
  console.log(`wrote ${generated.size} files to ${out}`);
}
