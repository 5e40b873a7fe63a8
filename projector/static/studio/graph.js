// The flow as a graph: a model from the document, a dagre layout, an SVG drawing whose
// nodes are focusable (roving tabindex: Tab enters the graph, the arrow keys move), and
// labels that live numbers refresh without a new layout.
import { trafficLine, trafficWords, pct } from './stats.js';
import { NODE_W, NODE_H, LABEL_W, LABEL_H } from './layout.js';

const SVG = 'http://www.w3.org/2000/svg';

function asList(to) {
  if (to === undefined || to === null) return [];
  return Array.isArray(to) ? to.map(String) : [String(to)];
}

// A `next`: a node, candidates (a decision point), or conditions (flow format v2: a list
// of {when, to}, each `to` a node or candidates). Its targets without repeats, and
// whether a policy decides among some of them.
function nextTargets(next) {
  if (Array.isArray(next) && next.some((item) => item !== null && typeof item === 'object')) {
    const branches = next.filter((item) => item !== null && typeof item === 'object');
    const tos = branches.map((branch) => asList(branch.to));
    return { targets: [...new Set(tos.flat())], decision: tos.some((to) => to.length >= 2) };
  }
  const targets = asList(next);
  return { targets, decision: targets.length >= 2 };
}

// A text given per locale (flow format v2) shows in the flow's fallback locale.
function fallbackText(text, doc) {
  if (text === null || typeof text !== 'object') return String(text || '');
  const locales = Array.isArray(doc.locales) ? doc.locales : [];
  const fallback = doc.default_locale || locales[0];
  const value = fallback in text ? text[fallback] : Object.values(text)[0];
  return String(value || '');
}

/** Nodes and edges (one per from>to pair, with the buttons that lead there) of a document. */
export function buildModel(doc) {
  const nodes = [];
  const byId = new Map();
  for (const raw of Array.isArray(doc && doc.nodes) ? doc.nodes : []) {
    if (!raw || raw.id === undefined || byId.has(String(raw.id))) continue;
    const node = { id: String(raw.id), kind: String(raw.kind || ''), text: fallbackText(raw.text, doc), decisions: [] };
    nodes.push(node);
    byId.set(node.id, node);
  }
  const edges = new Map();
  const add = (from, to, button, decision) => {
    if (!byId.has(to)) return; // a next to an unknown node: the server's error marks the node
    const key = `${from}>${to}`;
    let edge = edges.get(key);
    if (!edge) {
      edge = { key, from, to, buttons: [], decisionButtons: [] };
      edges.set(key, edge);
    }
    if (button !== null) edge.buttons.push(button);
    if (decision) edge.decisionButtons.push(button);
  };
  for (const raw of Array.isArray(doc && doc.nodes) ? doc.nodes : []) {
    if (!raw || raw.id === undefined) continue;
    const from = String(raw.id);
    for (const to of nextTargets(raw.next).targets) add(from, to, null, false);
    for (const button of Array.isArray(raw.buttons) ? raw.buttons : []) {
      if (!button) continue;
      const { targets, decision } = nextTargets(button.next);
      if (decision) byId.get(from).decisions.push(String(button.id));
      for (const to of targets) add(from, to, String(button.id), decision);
    }
  }
  return { start: doc && doc.start ? String(doc.start) : null, nodes, edges: [...edges.values()] };
}

/** Lays out graphs in the layout worker; only the latest request's answer is used. */
export class Layouter {
  constructor() {
    this.worker = new Worker(new URL('./layout-worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.next = 0;
    this.worker.onmessage = (event) => {
      const { id, layout: laid, error } = event.data;
      const done = this.pending.get(id);
      this.pending.delete(id);
      if (done) (error ? done.reject(new Error(error)) : done.resolve(laid));
    };
  }

  /** The layout of `model` (a Promise). */
  layout(model) {
    const id = ++this.next;
    const graph = {
      nodes: model.nodes.map((n) => n.id),
      edges: model.edges.map((e) => [e.from, e.to]),
    };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, graph });
    });
  }
}

function buttonsText(edge) {
  return edge.buttons.length ? clip(edge.buttons.join(', '), 18) : '';
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Two lines of at most ~30 characters. */
function lines(text) {
  const words = text.replace(/\s+/g, ' ').trim().split(' ');
  const out = [''];
  for (const w of words) {
    const cur = out[out.length - 1];
    if ((cur + ' ' + w).trim().length > 30) {
      if (out.length === 2) {
        out[1] = clip(`${out[1]} ${w}`, 30);
        break;
      }
      out.push(w);
    } else {
      out[out.length - 1] = (cur + ' ' + w).trim();
    }
  }
  return out;
}

/**
 * Draw the model, laid out as `pos` (Layouter), into `container`. `onActivate(nodeId)` is
 * called on Enter or a click, `onFocusNode(id, parts, errors)` on focus or hover.
 * Returns a handle: update(errors, stats, shares) (call it once drawn: until then the
 * nodes have no accessible name), setErrors(map node -> [messages]), setStats(edgeStats,
 * shares), focus(id), reveal(id).
 */
export function drawGraph(container, model, pos, onActivate, onFocusNode) {
  const svg = el('svg', {
    width: pos.width, height: pos.height, viewBox: `0 0 ${pos.width} ${pos.height}`,
    role: 'group', 'aria-label': `Flow graph: ${model.nodes.length} nodes, ${model.edges.length} edges`,
  });
  const defs = el('defs');
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow' }));
  defs.append(marker);
  svg.append(defs);

  const edgeLayer = el('g', { class: 'edges', 'aria-hidden': 'true' });
  const labels = new Map();
  for (const edge of model.edges) {
    const p = pos.edges[edge.key];
    if (!p) continue;
    const g = el('g', { class: edge.decisionButtons.length ? 'edge decision' : 'edge', 'data-edge': edge.key });
    const pts = p.points || [];
    const d = pts.map((pt, i) => `${i ? 'L' : 'M'} ${pt.x.toFixed(1)} ${pt.y.toFixed(1)}`).join(' ');
    g.append(el('path', { d, 'marker-end': 'url(#arrow)' }));
    const label = el('g', { class: 'label', transform: `translate(${(p.x - LABEL_W / 2).toFixed(1)} ${(p.y - LABEL_H / 2).toFixed(1)})` });
    label.append(el('rect', { width: LABEL_W, height: LABEL_H, rx: 3 }));
    const t1 = el('text', { x: 4, y: 12 }, buttonsText(edge));
    const t2 = el('text', { x: 4, y: 26 }, '');
    label.append(t1, t2);
    g.append(label);
    edgeLayer.append(g);
    labels.set(edge.key, { t1, t2, edge });
  }
  svg.append(edgeLayer);

  const nodeLayer = el('g', { class: 'nodes' });
  const nodeEls = new Map();
  model.nodes.forEach((node, i) => {
    const p = pos.nodes[node.id];
    const classes = ['node'];
    if (node.decisions.length) classes.push('decision');
    if (node.kind === 'end') classes.push('end');
    const g = el('g', {
      class: classes.join(' '), tabindex: i === 0 ? 0 : -1, role: 'group', 'aria-roledescription': 'flow node', 'data-node': node.id,
      transform: `translate(${(p.x - NODE_W / 2).toFixed(1)} ${(p.y - NODE_H / 2).toFixed(1)})`,
    });
    const title = el('title', {}, '');
    g.append(title, el('rect', { width: NODE_W, height: NODE_H, rx: 6 }));
    const head = `${node.id} · ${node.kind}${node.decisions.length ? ' · decision' : ''}`;
    g.append(el('text', { x: 8, y: 16, class: 'id' }, clip(head, 30)));
    lines(node.text).forEach((line, j) => g.append(el('text', { x: 8, y: 32 + j * 14 }, line)));
    const badge = el('text', { x: NODE_W - 18, y: 16, class: 'badge' }, '');
    g.append(badge);
    nodeLayer.append(g);
    nodeEls.set(node.id, { g, title, badge, node });
  });
  svg.append(nodeLayer);

  const outgoing = new Map(model.nodes.map((n) => [n.id, []]));
  for (const edge of model.edges) outgoing.get(edge.from).push(edge);
  let errors = new Map();
  let edgeStats = new Map();
  let shares = new Map();

  function describe(id) {
    const { node } = nodeEls.get(id);
    const parts = [`Node ${node.id} (${node.kind}${node.decisions.length ? `, decision point on ${node.decisions.join(', ')}` : ''}): ${node.text}`];
    const errs = errors.get(id) || [];
    if (errs.length) parts.push(`Errors: ${errs.join('; ')}`);
    const out = outgoing.get(id);
    if (out.length) {
      parts.push(`Leads to: ${out.map((e) => edgeWords(e)).join('; ')}`);
    }
    return parts;
  }

  function shareOf(edge) {
    const found = edge.decisionButtons
      .map((b) => shares.get(`${edge.from}>${b}>${edge.to}`))
      .filter((s) => s !== undefined);
    return found.length ? found.reduce((a, b) => a + b, 0) / found.length : null;
  }

  function edgeWords(edge) {
    const s = edgeStats.get(edge.key) || { count: 0, converted: 0 };
    const share = shareOf(edge);
    const via = edge.buttons.length ? ` via ${edge.buttons.join(', ')}` : '';
    return `${edge.to}${via}: ${trafficWords(s.count, s.converted)}${share === null ? '' : `, policy share ${pct(share)}`}`;
  }

  function refreshNode(id) {
    const entry = nodeEls.get(id);
    const text = describe(id);
    entry.g.setAttribute('aria-label', text.join('. '));
    entry.title.textContent = text.join('\n');
    const errs = errors.get(id) || [];
    entry.g.classList.toggle('error', errs.length > 0);
    entry.g.setAttribute('aria-invalid', errs.length ? 'true' : 'false');
    entry.badge.textContent = errs.length ? '⚠' : '';
  }

  const order = model.nodes.map((n) => n.id);
  function focusNode(id) {
    const entry = nodeEls.get(id);
    if (!entry) return false;
    for (const other of nodeEls.values()) other.g.setAttribute('tabindex', '-1');
    entry.g.setAttribute('tabindex', '0');
    entry.g.focus();
    return true;
  }
  svg.addEventListener('keydown', (ev) => {
    const id = ev.target.getAttribute && ev.target.getAttribute('data-node');
    if (!id) return;
    const i = order.indexOf(id);
    let next = null;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowRight') next = order[Math.min(order.length - 1, i + 1)];
    else if (ev.key === 'ArrowUp' || ev.key === 'ArrowLeft') next = order[Math.max(0, i - 1)];
    else if (ev.key === 'Home') next = order[0];
    else if (ev.key === 'End') next = order[order.length - 1];
    else if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      onActivate(id);
      return;
    }
    if (next !== null) {
      ev.preventDefault();
      focusNode(next);
    }
  });
  const show = (ev) => {
    const g = ev.target.closest && ev.target.closest('[data-node]');
    if (g) onFocusNode(g.getAttribute('data-node'), describe(g.getAttribute('data-node')), errors.get(g.getAttribute('data-node')) || []);
  };
  svg.addEventListener('focusin', show);
  svg.addEventListener('mouseover', show);
  svg.addEventListener('click', (ev) => {
    const g = ev.target.closest && ev.target.closest('[data-node]');
    if (g) {
      focusNode(g.getAttribute('data-node'));
      onActivate(g.getAttribute('data-node'));
    }
  });

  container.replaceChildren(svg);

  return {
    nodeCount: model.nodes.length,
    has: (id) => nodeEls.has(id),
    /** Scroll the container so that node `id` is in view, near the top centre. */
    reveal(id) {
      const p = id && pos.nodes[id];
      if (!p) return;
      container.scrollLeft = Math.max(0, p.x - container.clientWidth / 2);
      container.scrollTop = Math.max(0, p.y - NODE_H);
    },
    focus: focusNode,
    /** Errors, numbers and shares at once (one pass over the nodes). */
    update(errorMap, stats, policy) {
      errors = errorMap;
      this.setStats(stats, policy);
    },
    setErrors(map) {
      errors = map;
      for (const id of order) refreshNode(id);
    },
    setStats(stats, policy) {
      edgeStats = stats;
      shares = policy;
      for (const { t1, t2, edge } of labels.values()) {
        const s = stats.get(edge.key) || { count: 0, converted: 0 };
        const share = shareOf(edge);
        t1.textContent = buttonsText(edge) + (share === null ? '' : ` · share ${pct(share)}`);
        t2.textContent = trafficLine(s.count, s.converted);
      }
      for (const id of order) refreshNode(id);
    },
  };
}
