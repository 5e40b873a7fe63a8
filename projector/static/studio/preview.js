// The preview page: starts the real widget on a draft, with the token the studio got from
// POST /api/v1/flows/preview (in this page's #fragment, never sent to the server as a URL).
// The widget comes from where the server's config.json says (its own /widget.js under
// `leadflow serve`; a gateway's in the distributed mode, which this page's CSP allows).
const params = new URLSearchParams(location.hash.slice(1));
const flow = params.get('flow') || '';
const token = params.get('preview') || '';
const site = params.get('site') || 'demo';
const what = document.getElementById('what');

async function widgetUrl() {
  try {
    const response = await fetch('config.json', { cache: 'no-store', credentials: 'omit' });
    const body = response.ok ? await response.json() : null;
    return body && body.preview ? body.preview : { widget_url: null, reason: null };
  } catch {
    return { widget_url: null, reason: null };
  }
}

async function start() {
  if (!flow || !token) {
    what.textContent = 'No draft to preview: open this page from the studio\'s Preview button.';
    return;
  }
  const config = await widgetUrl();
  if (!config.widget_url) {
    what.textContent = config.reason || 'No preview here: the server names no widget.';
    return;
  }
  what.textContent = `Draft of ${flow} (site ${site}): the chat is open at the bottom right.`;
  const script = document.createElement('script');
  script.src = config.widget_url;
  script.defer = true;
  script.dataset.site = site;
  script.dataset.flow = flow;
  script.dataset.preview = token;
  script.dataset.open = 'true';
  script.dataset.title = `Preview: ${flow}`;
  script.addEventListener('error', () => {
    what.textContent = `Could not load the widget from ${config.widget_url}.`;
  });
  document.head.append(script);
}

start();
