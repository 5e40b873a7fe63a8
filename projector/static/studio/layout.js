// The flow graph's layout with dagre, as plain data (run in the layout worker:
// layout-worker.js). Pure but for dagre.

export const NODE_W = 190;
export const NODE_H = 58;
export const LABEL_W = 160;
export const LABEL_H = 30;

// Past this many nodes the layout trades some quality for time: the nodes' order in
// their ranks comes from a fixed number of barycentre sweeps (`sweptOrder`) instead of
// dagre's ordering, and edge labels are not laid out as nodes of their own (each is
// drawn at its edge's middle point), which halves the ranks (bench.studio).
export const LARGE_GRAPH = 150;

function middle(points) {
  if (!points || !points.length) return { x: 0, y: 0 };
  if (points.length % 2) return points[(points.length - 1) / 2];
  const a = points[points.length / 2 - 1];
  const b = points[points.length / 2];
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
}

/**
 * The order of the nodes in their ranks for large graphs, given to dagre as `customOrder`
 * (its graph then has an edge only between adjacent ranks: long edges are chains of dummy
 * nodes). dagre's initial order (a depth-first walk from the nodes by rank, each node put
 * at the end of its rank's layer), then `SWEEPS` barycentre sweeps, alternately down
 * (each node to the mean order of its predecessors) and up (of its successors). dagre's
 * own ordering does the same sweeps but builds two layer graphs per rank for them and
 * repeats until four sweeps bring no fewer crossings: on a 500-node flow most of the
 * layout's time, for a narrower drawing only than the initial order alone gives.
 */
export const SWEEPS = 8;

export function sweptOrder(g) {
  const layers = [];
  const seen = new Set();
  const stack = [];
  const simple = g.nodes().filter((v) => !(g.children(v) || []).length);
  const byRank = simple.map((v, i) => [g.node(v).rank, i, v]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (const [, , root] of byRank) {
    stack.push(root);
    while (stack.length) {
      const v = stack.pop();
      if (seen.has(v)) continue;
      seen.add(v);
      const rank = g.node(v).rank;
      (layers[rank] || (layers[rank] = [])).push(v);
      const next = g.successors(v) || [];
      for (let i = next.length - 1; i >= 0; i--) if (!seen.has(next[i])) stack.push(next[i]);
    }
  }
  const ranks = layers.filter(Boolean);
  const number = (layer) => layer.forEach((v, i) => { g.node(v).order = i; });
  ranks.forEach(number);
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const down = sweep % 2 === 0;
    for (const layer of down ? ranks : [...ranks].reverse()) {
      const key = new Map();
      for (const v of layer) {
        const near = (down ? g.predecessors(v) : g.successors(v)) || [];
        const own = g.node(v).order;
        key.set(v, near.length ? near.reduce((sum, w) => sum + g.node(w).order, 0) / near.length : own);
      }
      layer.sort((a, b) => key.get(a) - key.get(b) || g.node(a).order - g.node(b).order);
      number(layer);
    }
  }
}

/**
 * `graph`: {nodes: [id], edges: [[from, to]]}. Answers {large, width, height,
 * nodes: {id: {x, y}}, edges: {"from>to": {x, y, points}}} (centres, top to bottom).
 */
export function computeLayout(graph, dagre) {
  const large = graph.nodes.length > LARGE_GRAPH;
  const g = new dagre.graphlib.Graph();
  g.setGraph({
    rankdir: 'TB', nodesep: 24, ranksep: large ? 70 : 46, edgesep: 12, marginx: 16, marginy: 16,
    ranker: large ? 'longest-path' : 'network-simplex',
  });
  g.setDefaultEdgeLabel(() => ({}));
  for (const id of graph.nodes) g.setNode(id, { width: NODE_W, height: NODE_H });
  for (const [from, to] of graph.edges) {
    if (from === to) continue;
    g.setEdge(from, to, large ? {} : { width: LABEL_W, height: LABEL_H, labelpos: 'c' });
  }
  dagre.layout(g, large ? { customOrder: sweptOrder } : {});
  const nodes = {};
  for (const id of graph.nodes) {
    const n = g.node(id);
    nodes[id] = { x: n.x, y: n.y };
  }
  const edges = {};
  for (const [from, to] of graph.edges) {
    if (from === to) continue;
    const e = g.edge(from, to);
    const at = large ? middle(e.points) : { x: e.x, y: e.y };
    edges[`${from}>${to}`] = { x: at.x, y: at.y, points: e.points || [] };
  }
  const size = g.graph();
  return { large, width: Math.ceil(size.width || 0), height: Math.ceil(size.height || 0), nodes, edges };
}
