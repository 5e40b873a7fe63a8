// The graph layout (dagre) as an ES module for the studio's layout worker
// (projector/static/studio/layout-worker.js imports it as ./vendor/dagre.js).
export { layout as dagreLayout, graphlib as dagreGraphlib } from '@dagrejs/dagre';
