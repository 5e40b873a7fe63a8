// Bundles src/vendor.js with esbuild into projector/static/studio/vendor/studio-vendor.js and
// writes the licences of every package that went into it next to it; copies axe-core (the
// e2e tests' accessibility checker, never served) into tests/e2e/vendor/. Run by
// scripts/build-studio after `npm ci`: the same lock gives the same bytes.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const out = join(root, 'projector/static/studio/vendor');
const e2e = join(root, 'tests/e2e/vendor');
mkdirSync(out, { recursive: true });
mkdirSync(e2e, { recursive: true });

// The editor side (studio-vendor.js) and the layout (dagre.js, loaded by the layout worker).
const inputs = [];
for (const [entry, file] of [['src/vendor.js', 'studio-vendor.js'], ['src/dagre.js', 'dagre.js']]) {
  const result = await build({
    entryPoints: [join(here, entry)],
    bundle: true,
    format: 'esm',
    minify: true,
    target: 'es2020',
    legalComments: 'none',
    metafile: true,
    outfile: join(out, file),
    banner: { js: '/*! Leadflow studio vendor bundle: licences in THIRD_PARTY_LICENSES.txt */' },
  });
  inputs.push(...Object.keys(result.metafile.inputs));
}

// The packages whose files are in the bundles, each once, by name.
const packages = new Map();
for (const input of inputs) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (!match) continue;
  const name = match[1];
  const dir = join(here, 'node_modules', name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  packages.set(name, { dir, version: pkg.version, license: pkg.license });
}
const notices = [];
for (const [name, { dir, version, license }] of [...packages].sort()) {
  const file = ['LICENSE', 'LICENSE.md', 'LICENSE.txt'].map((f) => join(dir, f)).find(existsSync);
  if (!file) throw new Error(`no licence file in ${name}`);
  notices.push(`${name}@${version} (${license})\n\n${readFileSync(file, 'utf8').trim()}\n`);
}
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'), notices.join('\n' + '-'.repeat(72) + '\n\n'));

const axe = join(here, 'node_modules/axe-core');
copyFileSync(join(axe, 'axe.min.js'), join(e2e, 'axe.min.js'));
copyFileSync(join(axe, 'LICENSE'), join(e2e, 'axe-core.LICENSE'));
const axeVersion = JSON.parse(readFileSync(join(axe, 'package.json'), 'utf8')).version;
writeFileSync(join(e2e, 'README.md'), `axe-core ${axeVersion} (MPL-2.0, LICENSE: axe-core.LICENSE), copied by scripts/build-studio from studio/node_modules; used by the e2e tests only, never served.\n`);
console.log(`studio-vendor.js, dagre.js: ${[...packages.keys()].join(', ')}`);
