// The preview page: starts the real widget on a draft, with the token the studio got from
// POST /api/v1/flows/preview (in this page's #fragment, never sent to the server as a URL).
const params = new URLSearchParams(location.hash.slice(1));
const flow = params.get('flow') || '';
const token = params.get('preview') || '';
const site = params.get('site') || 'demo';
const what = document.getElementById('what');
if (!flow || !token) {
  what.textContent = 'No draft to preview: open this page from the studio\'s Preview button.';
} else {
  what.textContent = `Draft of ${flow} (site ${site}): the chat is open at the bottom right.`;
  const script = document.createElement('script');
  script.src = '/widget.js';
  script.defer = true;
  script.dataset.site = site;
  script.dataset.flow = flow;
  script.dataset.preview = token;
  script.dataset.open = 'true';
  script.dataset.title = `Preview: ${flow}`;
  document.head.append(script);
}
