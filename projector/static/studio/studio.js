// The studio: key form, flow editor with validation as you type, graph with live numbers,
// publish with a diff and If-Match, versions with activate (rollback). docs/admin-api.md.
// The editor and the YAML parser (a large bundle) are loaded once the first graph is
// drawn (or when there is none to draw): on a large flow the layout (in the worker) and
// the drawing come first, not sharing the cores with the editor's start.
let V = null; // the vendor module, once loaded
let vendorLoading = null;

function loadVendor() {
  if (vendorLoading === null) {
    vendorLoading = import('./vendor/studio-vendor.js').then(createEditor);
    vendorLoading.catch((err) => alarm(`Could not load the editor: ${err.message}`));
  }
  return vendorLoading;
}
import { call, errorMessage, keyStore } from './api.js';
import { Layouter, buildModel, drawGraph } from './graph.js';
import { funnelEdges, policyShares } from './stats.js';
import { diffDocs, isEmpty } from './docdiff.js';

const VALIDATE_DELAY_MS = 400;
const REFRESH_MS = 4000;
const $ = (id) => document.getElementById(id);

const state = {
  flows: [],
  flowId: null,
  versions: [],
  shownVersion: null, // the version the editor was loaded from (its funnel is drawn)
  activeVersion: null,
  activeDoc: null,
  draftDoc: null,
  valid: false,
  errors: [],
  graph: null,
  graphKey: null,
  drawnFlow: null,
  errorsByNode: new Map(),
  layouter: new Layouter(),
  knownDoc: null,
  validateSeq: 0,
  timer: null,
  refreshTimer: null,
  stats: new Map(),
  shares: new Map(),
  editor: null,
  loading: false,
  previewSupported: false,
  widget: null, // from config.json: {widget_url, reason}; widget_url null: no preview here
};

function say(text) {
  $('message').textContent = text;
}

function alarm(text) {
  $('alert').textContent = text;
}

function li(text, cls) {
  const item = document.createElement('li');
  item.textContent = text;
  if (cls) item.className = cls;
  return item;
}

// ---- connect ---------------------------------------------------------------------

async function connect(key) {
  performance.mark('studio:connect');
  keyStore.set(key);
  const result = await call('GET', '/api/v1/flows');
  if (result.status !== 200) {
    keyStore.clear();
    alarm(result.status === 401 ? 'This key was refused.' : result.status === 403
      ? 'This key has no write scope: the studio needs one.' : `Could not connect: ${errorMessage(result)}`);
    $('api-key').focus();
    return false;
  }
  alarm('');
  $('key-form').hidden = true;
  $('session').hidden = false;
  $('workspace').hidden = false;
  state.flows = result.body.flows;
  const select = $('flow-select');
  select.replaceChildren(...state.flows.map((f) => new Option(f.flow_id, f.flow_id)));
  const wanted = new URLSearchParams(location.hash.slice(1)).get('flow');
  const initial = state.flows.find((f) => f.flow_id === wanted) || state.flows[0];
  if (initial) {
    select.value = initial.flow_id;
    await loadFlow(initial.flow_id);
  } else {
    say('No flows yet.');
    loadVendor();
  }
  probePreview();
  startRefresh();
  return true;
}

function disconnect() {
  keyStore.clear();
  stopRefresh();
  $('workspace').hidden = true;
  $('session').hidden = true;
  $('key-form').hidden = false;
  $('api-key').value = '';
  say('Disconnected: the key is forgotten.');
  $('api-key').focus();
}

// ---- flows and versions ----------------------------------------------------------

async function loadVersions(flowId) {
  const [result, list] = await Promise.all([
    call('GET', `/api/v1/flows/${encodeURIComponent(flowId)}/versions`),
    call('GET', '/api/v1/flows'),
  ]);
  if (result.status !== 200) throw new Error(errorMessage(result));
  state.versions = result.body.versions;
  if (list.status === 200) state.flows = list.body.flows;
  const entry = list.status === 200 ? list.body.flows.find((f) => f.flow_id === flowId) : null;
  state.activeVersion = entry ? entry.active_version : null;
  renderVersions();
}

async function fetchDocument(flowId, version) {
  const result = await call('GET', `/api/v1/flows/${encodeURIComponent(flowId)}/versions/${version}`);
  if (result.status !== 200) throw new Error(errorMessage(result));
  return result.body.document;
}

async function loadFlow(flowId, version) {
  if (flowId !== state.flowId) state.graphKey = null;
  state.flowId = flowId;
  history.replaceState(null, '', `#flow=${encodeURIComponent(flowId)}`);
  try {
    // the flows list names the active version: its document and the versions together
    const listed = state.flows.find((f) => f.flow_id === flowId);
    const guess = listed ? listed.active_version : null;
    const early = guess ? fetchDocument(flowId, guess) : null;
    if (early) early.catch(() => {}); // used (and its failure seen) below, or not at all
    await loadVersions(flowId);
    const shown = version || state.activeVersion || state.versions.at(-1).version;
    const active = state.activeVersion === guess && early ? early : null;
    state.activeDoc = state.activeVersion ? await (active || fetchDocument(flowId, state.activeVersion)) : null;
    const doc = shown === state.activeVersion ? state.activeDoc : await fetchDocument(flowId, shown);
    state.shownVersion = shown;
    $('version-select').value = String(shown);
    performance.mark('studio:document');
    const drawn = redraw(doc);
    if (V === null) await drawn; // the first graph before the editor starts (loadVendor)
    await loadVendor();
    setEditorText(V.stringifyYaml(ordered(doc), { lineWidth: 0 }), doc);
    say(`Loaded ${flowId} version ${shown}${shown === state.activeVersion ? ' (active)' : ''}.`);
    await refreshStats();
  } catch (err) {
    alarm(`Could not load ${flowId}: ${err.message}`);
  }
}

const ORDER = ['id', 'version', 'title', 'start', 'kind', 'label', 'text', 'fields', 'buttons', 'next', 'nodes'];

/** The document with its keys in the order a person writes them (the registry stores
 * them sorted): id first, nodes last. */
function ordered(value) {
  if (Array.isArray(value)) return value.map(ordered);
  if (!value || typeof value !== 'object') return value;
  const rank = (k) => (ORDER.includes(k) ? ORDER.indexOf(k) : ORDER.length - 1);
  const keys = Object.keys(value).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return Object.fromEntries(keys.map((k) => [k, ordered(value[k])]));
}

function renderVersions() {
  const select = $('version-select');
  select.replaceChildren(...state.versions.map((v) => new Option(
    `v${v.version}${v.version === state.activeVersion ? ' (active)' : ''}`, String(v.version))));
  if (state.shownVersion) select.value = String(state.shownVersion);
  const rows = [...state.versions].reverse().map((v) => {
    const tr = document.createElement('tr');
    const cells = [`v${v.version}`, v.published_at.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC'), v.published_by,
      v.active_for.length ? v.active_for.join(', ') : '–'];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement('td');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary';
    const active = v.version === state.activeVersion;
    button.textContent = active ? 'Active' : 'Activate';
    button.disabled = active;
    button.setAttribute('aria-label', active ? `Version ${v.version} is active` : `Activate version ${v.version}`);
    button.dataset.version = String(v.version);
    button.addEventListener('click', () => activate(v.version));
    td.append(button);
    tr.append(td);
    return tr;
  });
  $('versions').replaceChildren(...rows);
}

async function activate(version) {
  const result = await call('PUT', `/api/v1/flows/${encodeURIComponent(state.flowId)}/active`, {
    body: JSON.stringify({ version }),
  });
  if (result.status !== 200) {
    alarm(`Could not activate version ${version}: ${errorMessage(result)}`);
    return;
  }
  alarm('');
  await loadVersions(state.flowId);
  state.activeDoc = await fetchDocument(state.flowId, version);
  say(`Version ${version} is now active: new visitors get it.`);
  const button = document.querySelector(`#versions button[data-version="${version}"]`);
  if (button) button.closest('tr').querySelector('td').focus?.();
}

// ---- editor and validation ------------------------------------------------------

/** Replace the editor's text; `doc`: the document it is (no need to parse it again). */
function setEditorText(text, doc = null) {
  state.knownDoc = doc === null ? null : { text, doc };
  state.loading = true;
  state.editor.dispatch({ changes: { from: 0, to: state.editor.state.doc.length, insert: text } });
  performance.mark('studio:editor-filled');
  state.loading = false;
  scheduleCheck(0);
}

function scheduleCheck(delay = VALIDATE_DELAY_MS) {
  clearTimeout(state.timer);
  state.timer = setTimeout(check, delay);
}

/** The line of a node's definition in the text (1-based), or null. */
function nodeLine(text, nodeId) {
  const lines = text.split('\n');
  const esc = nodeId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const yamlId = new RegExp(`^(\\s*)-\\s+id:\\s*["']?${esc}["']?\\s*(#.*)?$`);
  const jsonId = new RegExp(`"id"\\s*:\\s*"${esc}"`);
  let best = null;
  lines.forEach((line, i) => {
    const m = line.match(yamlId);
    if (m && (best === null || m[1].length < best.indent)) best = { line: i + 1, indent: m[1].length };
  });
  if (best) return best.line;
  const j = lines.findIndex((line) => jsonId.test(line));
  return j >= 0 ? j + 1 : null;
}

async function check() {
  const text = state.editor.state.doc.toString();
  const seq = ++state.validateSeq;
  let doc = null;
  if (state.knownDoc && state.knownDoc.text === text) {
    doc = state.knownDoc.doc;
  } else {
    try {
      doc = V.parseYaml(text);
    } catch {
      doc = null;
    }
  }
  if (doc && typeof doc === 'object') {
    state.draftDoc = doc;
    redraw(doc);
  }
  if (state.knownDoc && state.knownDoc.text === text) {
    showErrors([]); // a published version as loaded: the registry took it valid
    return;
  }
  $('validity').textContent = 'Checking…';
  $('validity').className = 'validity';
  const contentType = text.trimStart().startsWith('{') ? 'application/json' : 'application/yaml';
  let result;
  try {
    result = await call('POST', '/api/v1/flows/validate', { body: text, contentType });
  } catch (err) {
    if (seq === state.validateSeq) $('validity').textContent = `Could not check: ${err.message}`;
    return;
  }
  if (seq !== state.validateSeq) return; // a later edit's answer will come
  if (result.status === 200) {
    showErrors([]);
  } else if (result.status === 422 && result.body && result.body.error) {
    showErrors(result.body.error.errors || []);
  } else {
    showErrors([{ node: '', field: '', message: errorMessage(result) }]);
  }
}

function showErrors(errors) {
  state.errors = errors;
  state.valid = errors.length === 0;
  const validity = $('validity');
  validity.textContent = state.valid ? 'Valid' : `${errors.length} error${errors.length === 1 ? '' : 's'}`;
  validity.className = `validity ${state.valid ? 'ok' : 'bad'}`;
  $('review').disabled = !state.valid;
  $('preview').disabled = !state.valid || !previewWidget();
  const items = errors.map((e) => {
    const item = document.createElement('li');
    const where = [e.node, e.field].filter(Boolean).join(' · ');
    const text = `${where ? `${where}: ` : ''}${e.message}`;
    if (e.node) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = text;
      button.addEventListener('click', () => {
        if (!(state.graph && state.graph.focus(e.node))) jumpToNode(e.node);
      });
      item.append(button);
    } else {
      item.textContent = text;
    }
    return item;
  });
  $('errors').replaceChildren(...items);
  const byNode = new Map();
  for (const e of errors) {
    if (!e.node) continue;
    const list = byNode.get(e.node) || [];
    list.push(`${e.field ? `${e.field}: ` : ''}${e.message}`);
    byNode.set(e.node, list);
  }
  state.errorsByNode = byNode;
  if (state.graph) state.graph.setErrors(byNode);
  const text = state.editor.state.doc.toString();
  const diagnostics = errors.map((e) => {
    const lineNo = (e.node && nodeLine(text, e.node)) || 1;
    const line = state.editor.state.doc.line(Math.min(lineNo, state.editor.state.doc.lines));
    return { from: line.from, to: line.to, severity: 'error', message: `${e.field ? `${e.field}: ` : ''}${e.message}` };
  });
  state.editor.dispatch(V.setDiagnostics(state.editor.state, diagnostics));
}

// ---- graph ------------------------------------------------------------------------

/** Lay the draft's graph out (in the worker) and draw it, unless it is the one drawn or
 * being laid out; a layout that a later edit made stale is dropped. Resolves once done. */
function redraw(doc) {
  const model = buildModel(doc);
  const key = JSON.stringify([model.nodes.map((n) => [n.id, n.kind, n.text, n.decisions]), model.edges.map((e) => [e.key, e.buttons, e.decisionButtons])]);
  if (key === state.graphKey) return Promise.resolve();
  state.graphKey = key;
  const requested = performance.now();
  performance.mark('studio:layout-start');
  return state.layouter.layout(model).then((pos) => {
    if (key !== state.graphKey) return; // a later edit's layout will come
    const started = performance.now();
    state.graph = drawGraph($('graph'), model, pos, jumpToNode, showDetails);
    state.graph.update(state.errorsByNode, state.stats, state.shares);
    if (state.drawnFlow !== state.flowId) {
      state.drawnFlow = state.flowId; // a new flow: show its start
      state.graph.reveal(model.start || (model.nodes[0] && model.nodes[0].id));
    }
    const graph = $('graph');
    graph.dataset.layoutMs = (started - requested).toFixed(1);
    graph.dataset.computeMs = (pos.computeMs || 0).toFixed(1);
    graph.dataset.drawnMs = (performance.now() - started).toFixed(1);
    graph.dataset.nodes = String(model.nodes.length);
    document.dispatchEvent(new CustomEvent('studio:graph-drawn'));
  }).catch((err) => alarm(`Could not lay out the graph: ${err.message}`));
}

function jumpToNode(nodeId) {
  if (!state.editor) return;
  const text = state.editor.state.doc.toString();
  const lineNo = nodeLine(text, nodeId);
  if (!lineNo) return;
  const line = state.editor.state.doc.line(lineNo);
  state.editor.dispatch({ selection: { anchor: line.from }, effects: V.EditorView.scrollIntoView(line.from, { y: 'center' }) });
  state.editor.focus();
}

function showDetails(nodeId, parts, errors) {
  const box = $('details');
  const items = parts.map((p) => {
    const para = document.createElement('p');
    para.textContent = p;
    if (p.startsWith('Errors:')) para.className = 'error-text';
    return para;
  });
  box.replaceChildren(...items);
  box.dataset.node = nodeId;
  box.dataset.errors = String(errors.length);
}

// ---- live numbers -----------------------------------------------------------------

async function refreshStats() {
  if (!state.flowId || !state.shownVersion) return;
  const flow = encodeURIComponent(state.flowId);
  const [funnel, policy] = await Promise.all([
    call('GET', `/api/v1/flows/${flow}/funnel?version=${state.shownVersion}`).catch(() => null),
    call('GET', `/policy/flows/${flow}/summary`).catch(() => null),
  ]);
  if (funnel && funnel.status === 200) state.stats = funnelEdges(funnel.body);
  state.shares = policy && policy.status === 200 && policy.body.flow_version === state.shownVersion
    ? policyShares(policy.body) : new Map();
  if (state.graph) state.graph.setStats(state.stats, state.shares);
  const totals = funnel && funnel.status === 200 ? funnel.body.totals : null;
  $('stats-status').textContent = totals
    ? `v${state.shownVersion}: ${totals.started} started, ${totals.leads} leads · updated ${new Date().toLocaleTimeString()}`
    : 'No numbers yet';
  $('graph').dataset.statsAt = String(Date.now());
}

function startRefresh() {
  stopRefresh();
  state.refreshTimer = setInterval(() => {
    if (document.visibilityState === 'visible') refreshStats();
  }, REFRESH_MS);
}

function stopRefresh() {
  clearInterval(state.refreshTimer);
  state.refreshTimer = null;
}

// ---- publish ----------------------------------------------------------------------

function diffList(title, items, cls) {
  if (!items.length) return [];
  const heading = document.createElement('h3');
  heading.textContent = title;
  const list = document.createElement('ul');
  list.append(...items.map((x) => li(x, cls)));
  return [heading, list];
}

function review() {
  if (!state.valid || !state.draftDoc) return;
  const d = diffDocs(state.activeDoc, state.draftDoc);
  const edge = (e) => `${e.from}${e.button ? ` [${e.button}]` : ''} → ${e.to}`;
  $('publish-summary').textContent = isEmpty(d)
    ? `The draft is the same flow as the active version v${state.activeVersion}: publishing changes nothing.`
    : `Changes against the active version v${state.activeVersion}:`;
  const parts = [
    ...diffList('Nodes added', d.nodes.added, 'added'),
    ...diffList('Nodes removed', d.nodes.removed, 'removed'),
    ...diffList('Nodes changed', d.nodes.changed, ''),
    ...diffList('Edges added', d.edges.added.map(edge), 'added'),
    ...diffList('Edges removed', d.edges.removed.map(edge), 'removed'),
  ];
  if (d.start_changed) parts.push(li('The start node changed'));
  if (d.title_changed) parts.push(li('The title changed'));
  $('diff').replaceChildren(...parts);
  $('publish-error').textContent = '';
  $('publish').disabled = false;
  $('publish-dialog').showModal();
  $('publish').focus();
}

async function publish() {
  const text = state.editor.state.doc.toString();
  const latest = state.versions.length ? state.versions.at(-1).version : null;
  const headers = latest === null ? {} : { 'If-Match': `"${latest}"` };
  const contentType = text.trimStart().startsWith('{') ? 'application/json' : 'application/yaml';
  $('publish').disabled = true;
  const result = await call('POST', '/api/v1/flows?activate=true', { body: text, contentType, headers });
  if (result.status === 409) {
    $('publish-error').textContent = `Not published: someone else published a newer version of ${state.flowId} since you loaded it (${errorMessage(result)}). Cancel, copy your changes, reload the flow and apply them again.`;
    return;
  }
  if (result.status === 422) {
    $('publish-error').textContent = 'Not published: the document is invalid.';
    showErrors(result.body.error.errors || []);
    return;
  }
  if (result.status !== 201 && result.status !== 200) {
    $('publish-error').textContent = `Not published: ${errorMessage(result)}`;
    return;
  }
  $('publish-dialog').close();
  const version = result.body.version;
  await loadFlow(state.flowId, version);
  say(result.status === 201
    ? `Published version ${version}: it is active, new visitors get it.`
    : `Nothing new: this document is version ${version} already; it is active.`);
  $('review').focus();
}

// ---- preview (hook) ---------------------------------------------------------------

// Preview (issue 18; docs/admin-api.md, *Preview*): the button is shown when the server
// has POST /api/v1/flows/preview (any answer but 404 to an empty body); it posts the draft
// and opens preview.html with the token in its #fragment, which starts the real widget
// with data-preview. A site key's token is for its site; the admin's for every site, and
// the page then uses the "demo" site (the page's origin must be one the site allows).
// Where the widget comes from is the server's setting (config.json: its own /widget.js
// under `leadflow serve`, a gateway's in the distributed mode); with none the button is
// shown disabled, with the reason next to it.
async function loadConfig() {
  try {
    const response = await fetch('config.json', { cache: 'no-store', credentials: 'omit' });
    const body = response.ok ? await response.json() : null;
    state.widget = body && body.preview ? body.preview : null;
  } catch {
    state.widget = null;
  }
}

function previewWidget() {
  return state.widget && state.widget.widget_url ? state.widget.widget_url : null;
}

async function probePreview() {
  const [result] = await Promise.all([
    call('POST', '/api/v1/flows/preview', { body: '', contentType: 'application/yaml' }).catch(() => null),
    state.widget === null ? loadConfig() : null,
  ]);
  state.previewSupported = Boolean(result && result.status !== 404);
  $('preview').hidden = !state.previewSupported;
  const reason = previewWidget() ? ''
    : (state.widget && state.widget.reason) || 'No preview here: the server names no widget.';
  $('preview-help').textContent = reason;
  $('preview-help').hidden = !state.previewSupported || !reason;
  $('preview').disabled = !state.valid || !previewWidget();
}

async function preview() {
  if (!previewWidget()) return;
  const text = state.editor.state.doc.toString();
  const contentType = text.trimStart().startsWith('{') ? 'application/json' : 'application/yaml';
  const result = await call('POST', '/api/v1/flows/preview', { body: text, contentType });
  if (result.status !== 201 || !result.body || !result.body.preview) {
    alarm(`No preview: ${errorMessage(result)}`);
    return;
  }
  alarm('');
  const site = result.body.site && result.body.site !== '*' ? result.body.site : 'demo';
  const url = new URL('preview.html', location.href);
  url.hash = new URLSearchParams({ flow: result.body.flow_id || state.flowId, site, preview: result.body.preview }).toString();
  window.open(url.href, '_blank', 'noopener');
  say('The preview opened in a new tab: its conversations are kept out of the numbers.');
}

// ---- start ------------------------------------------------------------------------

function createEditor(vendor) {
  V = vendor;
  const { EditorView, EditorState, basicSetup, yaml, lintGutter } = vendor;
  // In a shadow root, CodeMirror's styles are constructed stylesheets (adoptedStyleSheets),
  // which the page's CSP (style-src 'self', no inline styles) allows; in the document it
  // would add <style> elements, which it refuses.
  const shadow = $('editor').attachShadow({ mode: 'open' });
  state.editor = new EditorView({
    parent: shadow,
    root: shadow,
    state: EditorState.create({
      doc: '',
      extensions: [
        basicSetup,
        yaml(),
        lintGutter(),
        EditorView.contentAttributes.of({ 'aria-label': 'Flow document (YAML)', tabindex: '0' }),
        EditorView.theme({
          '&': { height: '100%', fontSize: '13px' },
          '.cm-scroller': { overflow: 'auto' },
          '&.cm-focused': { outline: '3px solid #2563eb' },
        }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged && !state.loading) scheduleCheck();
        }),
      ],
    }),
  });
}

function start() {
  $('key-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('api-key').value.trim();
    $('api-key').value = '';
    if (key) await connect(key);
  });
  $('disconnect').addEventListener('click', disconnect);
  $('flow-select').addEventListener('change', (ev) => loadFlow(ev.target.value));
  $('version-select').addEventListener('change', (ev) => loadFlow(state.flowId, Number(ev.target.value)));
  $('review').addEventListener('click', review);
  $('publish').addEventListener('click', publish);
  $('cancel').addEventListener('click', () => $('publish-dialog').close());
  $('preview').addEventListener('click', preview);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.refreshTimer) refreshStats();
  });
  const key = keyStore.get();
  if (key) connect(key);
  else $('api-key').focus();
}

start();
