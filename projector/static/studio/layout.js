// The flow graph's layout with dagre, as plain data (run in the layout worker:
// layout-worker.js). Pure but for dagre.

export const NODE_W = 190;
export const NODE_H = 58;
export const LABEL_W = 160;
export const LABEL_H = 30;

// Past this many nodes the layout trades some quality for time: dagre's crossing
// minimisation sweeps are skipped (its initial order is kept) and edge labels are not
// laid out as nodes of their own (each is drawn at its edge's middle point), which
// halves the ranks. A 500-node flow's layout takes about half as long (bench.studio).
export const LARGE_GRAPH = 150;

function middle(points) {
  if (!points || !points.length) return { x: 0, y: 0 };
  if (points.length % 2) return points[(points.length - 1) / 2];
  const a = points[points.length / 2 - 1];
  const b = points[points.length / 2];
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
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
  });
  g.setDefaultEdgeLabel(() => ({}));
  for (const id of graph.nodes) g.setNode(id, { width: NODE_W, height: NODE_H });
  for (const [from, to] of graph.edges) {
    if (from === to) continue;
    g.setEdge(from, to, large ? {} : { width: LABEL_W, height: LABEL_H, labelpos: 'c' });
  }
  dagre.layout(g, { disableOptimalOrderHeuristic: large });
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
