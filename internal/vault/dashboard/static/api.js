// The vault's public API, same origin, authenticated by the session cookie
// (HttpOnly: this script never sees the token). Writes carry the session's
// CSRF token. A 401 ends the session: the page returns to sign-in with the
// vault's message.

let csrf = '';
let onSessionEnded = () => {};

export class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || `HTTP${status}`;
    this.action = e.action || '';
    this.scope = e.scope || '';
    this.details = e.details || [];
    this.validation = body && body.validation;
  }
}

export function setSessionEndedHandler(f) { onSessionEnded = f; }
export function setCSRF(token) { csrf = token || ''; }

// api calls the API and returns the decoded JSON (null for 204), with the
// ETag in result.__etag when the response has one.
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
  const send = () => fetch(path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let res;
  try {
    res = await send();
  } catch (err) {
    // A read that failed on the network (a dropped connection) is tried
    // once more; a write is not repeated behind the user's back.
    if (method !== 'GET') throw new Error(`the vault did not answer (${err.message}); check the connection and try again`);
    await new Promise((r) => setTimeout(r, 1000));
    try { res = await send(); } catch (err2) { throw new Error(`the vault did not answer (${err2.message}); check the connection and reload`); }
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: { message: text } }; }
  }
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if (res.status === 401 && !opts.signingIn) onSessionEnded(err);
    throw err;
  }
  if (data && typeof data === 'object') {
    const etag = res.headers.get('ETag');
    if (etag) Object.defineProperty(data, '__etag', { value: etag });
    if (res.headers.get('Location')) Object.defineProperty(data, '__location', { value: res.headers.get('Location') });
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body, opts) => api('POST', path, body === undefined ? {} : body, opts);

export async function signIn(token) {
  const s = await api('POST', '/api/v1/session', { token }, { signingIn: true });
  setCSRF(s.csrfToken);
  return s;
}

export async function session() {
  const s = await api('GET', '/api/v1/session', undefined, { signingIn: true });
  setCSRF(s.csrfToken);
  return s;
}

export async function signOut() {
  setCSRF('');
  await fetch('/api/v1/session', { method: 'DELETE', credentials: 'same-origin' });
}

export const enc = encodeURIComponent;
export const vaultPath = (v) => `/api/v1/vaults/${enc(v)}`;
