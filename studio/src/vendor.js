// The studio's third-party code in one ES module (built by scripts/build-studio).
// projector/static/studio/studio.js imports it as ./vendor/studio-vendor.js.
export { EditorView, keymap } from '@codemirror/view';
export { EditorState } from '@codemirror/state';
export { basicSetup } from 'codemirror';
export { yaml } from '@codemirror/lang-yaml';
export { linter, setDiagnostics, lintGutter } from '@codemirror/lint';
export { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
