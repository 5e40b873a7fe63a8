// What the draft changes against the active version, from the two documents (the same
// rules as services/registry/diff.py: an edge is (from node, button id or "", to node); a
// node is changed when anything but its edges differs). Pure.

function asList(to) {
  if (to === undefined || to === null) return [];
  return Array.isArray(to) ? to.map(String) : [String(to)];
}

const isBranch = (item) => item !== null && typeof item === 'object';

// A `next`'s targets: a node, candidates, or (flow format v2) every branch's `to`.
function nextList(next) {
  if (Array.isArray(next) && next.some(isBranch)) {
    return [...new Set(next.filter(isBranch).flatMap((branch) => asList(branch.to)))];
  }
  return asList(next);
}

// The conditions of a conditional `next` (its targets are edges).
function whens(next) {
  return Array.isArray(next) && next.some(isBranch) ? next.filter(isBranch).map((b) => b.when ?? null) : [];
}

export function nodesOf(doc) {
  const nodes = new Map();
  for (const node of (doc && Array.isArray(doc.nodes) ? doc.nodes : [])) {
    if (node && node.id !== undefined) nodes.set(String(node.id), node);
  }
  return nodes;
}

export function edgesOf(doc) {
  const edges = new Set();
  for (const [id, node] of nodesOf(doc)) {
    for (const to of nextList(node.next)) edges.add(JSON.stringify([id, '', to]));
    for (const button of Array.isArray(node.buttons) ? node.buttons : []) {
      for (const to of nextList(button && button.next)) {
        edges.add(JSON.stringify([id, String(button.id), to]));
      }
    }
  }
  return edges;
}

// Everything of a node but its edges (texts given per locale: every locale).
function content(node) {
  const buttons = (Array.isArray(node.buttons) ? node.buttons : []).map((b) => [b && b.id, b && b.label]);
  const conditions = [whens(node.next), ...(Array.isArray(node.buttons) ? node.buttons : []).map((b) => whens(b && b.next))];
  const optional = (value) => (value === undefined ? null : value);
  return JSON.stringify([
    node.kind, node.text, buttons, optional(node.fields), optional(node.input), optional(node.image),
    optional(node.store_as), conditions,
  ]);
}

export function diffDocs(oldDoc, newDoc) {
  const before = nodesOf(oldDoc);
  const after = nodesOf(newDoc);
  const oldEdges = edgesOf(oldDoc);
  const newEdges = edgesOf(newDoc);
  const sorted = (xs) => [...xs].sort();
  const edge = (s) => {
    const [from, button, to] = JSON.parse(s);
    return { from, button, to };
  };
  return {
    nodes: {
      added: sorted([...after.keys()].filter((n) => !before.has(n))),
      removed: sorted([...before.keys()].filter((n) => !after.has(n))),
      changed: sorted([...after.keys()].filter((n) => before.has(n) && content(before.get(n)) !== content(after.get(n)))),
    },
    edges: {
      added: sorted([...newEdges].filter((e) => !oldEdges.has(e))).map(edge),
      removed: sorted([...oldEdges].filter((e) => !newEdges.has(e))).map(edge),
    },
    start_changed: (oldDoc && oldDoc.start) !== (newDoc && newDoc.start),
    title_changed: (oldDoc && oldDoc.title) !== (newDoc && newDoc.title),
  };
}

export function isEmpty(d) {
  return !(d.nodes.added.length || d.nodes.removed.length || d.nodes.changed.length ||
    d.edges.added.length || d.edges.removed.length || d.start_changed || d.title_changed);
}
