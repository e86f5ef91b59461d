// DOM helpers and formatting. Everything is built with createElement and
// textContent: no API value is ever parsed as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

// table builds an accessible table: caption, column headers with scope.
export function table(caption, headers, rows, opts = {}) {
  const t = h('table', { id: opts.id },
    caption ? h('caption', { class: opts.showCaption ? '' : 'visually-hidden' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : '' }, c.label || c)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', r.attrs || {}, r.cells.map((c, i) =>
      h('td', { class: headers[i] && headers[i].num ? 'num' : '' }, c))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing yet.'))));
  return h('div', { class: 'scroll' }, t);
}

export function badge(state) {
  const cls = {
    Completed: 'ok', Passed: 'ok', ProtectionConfigured: 'ok', Protected: 'ok', Connected: 'ok', 'On time': 'ok',
    CompletedWithWarnings: 'warn', Warning: 'warn', Late: 'warn', Queued: 'info', InProgress: 'info', Skipped: 'info',
    Verified: 'ok', VerificationFailed: 'bad', Available: 'ok', Added: 'ok', Removed: 'bad', Changed: 'warn', Approved: 'ok', Pending: 'info', Used: 'info', Rejected: 'bad', Expired: 'warn', SoftDeleted: 'warn',
    Failed: 'bad', Cancelled: 'warn', ProtectionStopped: 'warn', Never: 'bad', TrustedAccessRevoked: 'bad', TrustedAccessExpired: 'bad',
  }[state] || 'info';
  const label = { ProtectionConfigured: 'Protected', ProtectionStopped: 'Stopped', CompletedWithWarnings: 'Completed with warnings', InProgress: 'In progress', SoftDeleted: 'Soft-deleted' }[state] || state;
  return h('span', { class: `badge ${cls}` }, label);
}

export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${u[i]}`;
}

export function duration(seconds) {
  if (seconds === undefined || seconds === null || !isFinite(seconds)) return '—';
  let s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return hh ? `${d}d ${hh}h` : `${d}d`;
  if (hh) return m ? `${hh}h ${m}m` : `${hh}h`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC'));
}

export function ago(iso, now = Date.now()) {
  if (!iso) return '—';
  return `${duration((now - new Date(iso).getTime()) / 1000)} ago`;
}

export function link(href, text, attrs = {}) { return h('a', { href, ...attrs }, text); }

export function field(label, control, help) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const out = [h('label', { for: id }, label), h('div', {}, control, help ? h('div', { class: 'muted', id: `${id}-help` }, help) : null)];
  if (help) control.setAttribute('aria-describedby', `${id}-help`);
  return out;
}

export function announce(text) {
  const live = document.getElementById('live');
  if (live) live.textContent = text;
}
