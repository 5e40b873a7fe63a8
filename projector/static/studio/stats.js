// Conversion with a 90% Wilson score interval, and the labels the graph prints. Pure.

export const Z90 = 1.6448536269514722; // the standard normal's 95th percentile

/** The Wilson score interval of k successes in n trials ([lo, hi]; null when n is 0). */
export function wilson(k, n, z = Z90) {
  if (!(n > 0)) return null;
  const p = k / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

export function pct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  const v = x * 100;
  return `${v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)}%`;
}

/** An edge's traffic line: "n=120 · 18% (12–25%)", or "n=0" with no traffic. */
export function trafficLine(count, converted) {
  if (!count) return 'n=0';
  const interval = wilson(converted, count);
  return `n=${count} · ${pct(converted / count)} (${pct(interval[0])}–${pct(interval[1])})`;
}

/** The same in words, for the node details a screen reader reads. */
export function trafficWords(count, converted) {
  if (!count) return 'no traffic yet';
  const [lo, hi] = wilson(converted, count);
  return `${count} took it, ${converted} became leads: ${pct(converted / count)} (90% interval ${pct(lo)} to ${pct(hi)})`;
}

/** Funnel edges by "from>to": {count, converted}. */
export function funnelEdges(funnel) {
  const out = new Map();
  for (const e of (funnel && funnel.edges) || []) {
    out.set(`${e.from}>${e.to}`, { count: e.count || 0, converted: e.converted || 0 });
  }
  return out;
}

/** The policy's current shares by "node>button>target" (from GET /policy/flows/{id}/summary). */
export function policyShares(summary) {
  const out = new Map();
  for (const point of (summary && summary.decision_points) || []) {
    for (const e of point.edges || []) {
      out.set(`${point.node_id}>${point.button_id}>${e.edge}`, e.share);
    }
  }
  return out;
}
