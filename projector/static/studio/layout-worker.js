// The layout worker: lays out the flow graph off the page's thread, so the editor stays
// responsive while a large flow is laid out. Message in: {id, graph}; out: {id, layout}
// or {id, error}.
import { dagreGraphlib, dagreLayout } from './vendor/dagre.js';
import { computeLayout } from './layout.js';

const dagre = { graphlib: dagreGraphlib, layout: dagreLayout };

self.onmessage = (event) => {
  const { id, graph } = event.data;
  try {
    const started = performance.now();
    const layout = computeLayout(graph, dagre);
    layout.computeMs = performance.now() - started;
    self.postMessage({ id, layout });
  } catch (err) {
    self.postMessage({ id, error: String(err && err.message ? err.message : err) });
  }
};
