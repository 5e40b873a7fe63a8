// The admin API with the key from sessionStorage (never in a URL). Every call answers
// {status, body} (body: parsed JSON or null); network failures throw.
const KEY = 'leadflow.studio.key';

export const keyStore = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function call(method, path, { body, contentType, headers = {} } = {}) {
  const key = keyStore.get();
  const init = {
    method,
    headers: { ...headers, Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  };
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.body = body;
    init.headers['Content-Type'] = contentType || 'application/json';
  }
  const response = await fetch(path, init);
  let parsed = null;
  if ((response.headers.get('Content-Type') || '').includes('json')) {
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export function errorMessage(result) {
  const err = result.body && result.body.error;
  return err && err.message ? err.message : `HTTP ${result.status}`;
}
