// The Arca dashboard: a hash-routed single page over the vault's public
// API. Pages: sign-in, overview, instance, jobs, job, recovery points,
// recovery point (contents and diff where the vault serves them), restore
// wizard, policies, access (roles, assignments, audit), charts, and a
// code's entry from the user guide.
import * as A from './api.js';
import { h, clear, table, badge, bytes, duration, time, ago, link, field, announce } from './ui.js';
import { lineChart, barChart } from './charts.js';

const main = document.getElementById('main');
const state = { principal: '', vault: '', vaults: [], perms: new Map(), timers: [] };
const TERMINAL = ['Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled'];
const DAY = 86400e3;

// ---- session ----

A.setSessionEndedHandler((err) => {
  sessionStorage.setItem('signin-message', `Your session ended: ${err.message}`);
  state.principal = '';
  state.perms.clear();
  document.getElementById('top').hidden = true;
  if (location.hash !== '#/signin') location.hash = '#/signin';
  else route();
});

document.getElementById('signout').addEventListener('click', async () => {
  await A.signOut();
  state.principal = '';
  state.perms.clear();
  sessionStorage.setItem('signin-message', 'You signed out.');
  document.getElementById('top').hidden = true;
  location.hash = '#/signin';
});

document.getElementById('vault-select').addEventListener('change', (e) => {
  state.vault = e.target.value;
  state.perms.clear();
  localStorage.setItem('arca-vault', state.vault);
  route();
});

async function ensureSession() {
  if (state.principal) return true;
  try {
    const s = await A.session();
    await startSession(s);
    return true;
  } catch (e) {
    if (e instanceof A.APIError && e.code === 'InvalidToken') sessionStorage.setItem('signin-message', `Your session ended: ${e.message}`);
    return false;
  }
}

async function startSession(s) {
  state.principal = s.principal;
  state.perms.clear(); // another principal may have signed in
  document.getElementById('principal').textContent = `Signed in as ${s.principal}`;
  const vs = await A.get('/api/v1/vaults');
  state.vaults = (vs.items || []).map((v) => v.name);
  const saved = localStorage.getItem('arca-vault');
  state.vault = state.vaults.includes(saved) ? saved : (state.vaults[0] || '');
  const sel = clear(document.getElementById('vault-select'));
  for (const v of state.vaults) sel.appendChild(h('option', { value: v, selected: v === state.vault }, v));
  document.getElementById('top').hidden = false;
}

// can reports whether the signed-in principal's roles allow action at
// scope (the vault's own answer, GET /api/v1/permissions; cached per page
// load). It only hides or disables controls: the API decides.
async function can(action, scope = `/vaults/${state.vault}`) {
  if (!state.perms.has(scope)) {
    state.perms.set(scope, A.get(`/api/v1/permissions?scope=${A.enc(scope)}`).then((p) => new Set(p.actions)).catch(() => new Set()));
  }
  return (await state.perms.get(scope)).has(action);
}

// ---- errors ----

// errorBox shows an API error: code (linked to its user-guide entry),
// message, and for a denial the action and scope that were refused.
function errorBox(err, what) {
  const box = h('div', { class: 'notice bad', role: 'alert' });
  if (err instanceof A.APIError) {
    if (err.status === 403 && (err.code === 'ApprovalRequired' || err.code === 'ApprovalPending')) {
      box.append(h('strong', {}, `${what ? `${what}: ` : ''}needs a second person’s approval `), codeLink(err.code), ' ', err.message, ' ',
        link('#/approvals', 'See the approval requests.'));
    } else if (err.status === 403 && err.action) {
      box.append(h('strong', {}, `Refused: ${what ? `${what}: ` : ''}your roles do not allow `),
        h('code', { class: 'denied-action' }, err.action), h('strong', {}, ' at '), h('code', { class: 'denied-scope' }, err.scope), '.');
      box.append(h('p', {}, err.message));
    } else {
      box.append(h('strong', {}, what ? `${what} failed: ` : 'Error: '), codeLink(err.code), ' ', err.message);
    }
    if (err.details && err.details.length) {
      box.append(h('ul', {}, err.details.map((d) => h('li', {}, h('code', {}, d.field), d.value ? ` = ${d.value}` : '', `: ${d.reason}`))));
    }
    if (err.validation) box.append(reportTable(err.validation));
  } else {
    box.append(h('strong', {}, 'Error: '), String(err && err.message ? err.message : err));
  }
  return box;
}

function codeLink(code) {
  return code ? link(`#/code/${A.enc(code)}`, code, { class: 'code', title: `What ${code} means and how to fix it` }) : '';
}

function issuesTable(caption, issues) {
  return table(caption, ['Code', 'Message', 'Object'], (issues || []).map((i) => ({ cells: [codeLink(i.code), i.message, i.object || ''] })), { empty: 'None.' });
}

function reportTable(rep) {
  return h('div', {},
    h('p', { class: 'report-verdict' }, rep.passed ? badge('Passed') : badge('Failed'), ' ', `${rep.operation || ''} ${rep.target || ''}`),
    table('Prerequisite checks', ['Check', 'Result', 'Code', 'Found', 'Fix'], (rep.checks || []).map((c) => ({
      cells: [c.name || c.id, badge(c.result), codeLink(c.code), c.message, c.remedy || ''],
    }))),
    rep.assignments && rep.assignments.length ? table('Role assignments made', ['Check', 'Assignment', 'Done'], rep.assignments.map((a) => ({
      cells: [a.check, a.fix ? `${a.fix.role} for ${a.fix.principal} at ${a.fix.scope}` : '', a.done ? 'yes' : (a.reason || 'no')],
    }))) : null);
}

// ---- router ----

const routes = [
  [/^\/signin$/, pageSignIn, true],
  [/^\/$/, pageOverview],
  [/^\/instances\/([^/]+)$/, pageInstance],
  [/^\/jobs$/, pageJobs],
  [/^\/jobs\/([^/]+)$/, pageJob],
  [/^\/points$/, pagePoints],
  [/^\/points\/([^/]+)$/, pagePoint],
  [/^\/restore$/, pageRestore],
  [/^\/policies$/, pagePolicies],
  [/^\/policies\/([^/]+)$/, pagePolicy],
  [/^\/access$/, pageAccess],
  [/^\/approvals$/, pageApprovals],
  [/^\/charts$/, pageCharts],
  [/^\/code\/([^/]+)$/, pageCode, false, true],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path, query: new URLSearchParams(qs || '') };
}

let generation = 0;
async function route() {
  for (const t of state.timers) clearTimeout(t);
  state.timers = [];
  const gen = ++generation;
  const t0 = performance.now();
  const { path, query } = parseHash();
  const found = routes.find(([re]) => re.test(path));
  const [re, page, isPublic, noVault] = found || [/^/, pageNotFound, false, true];
  if (!isPublic && !(await ensureSession())) {
    if (!sessionStorage.getItem('signin-message') && path !== '/') sessionStorage.setItem('signin-message', 'Sign in to continue.');
    if (path !== '/signin') sessionStorage.setItem('after-signin', location.hash);
    location.hash = '#/signin';
    return;
  }
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href').slice(1);
    if (target === path || (target !== '/' && path.startsWith(target))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = h('div', { id: 'view' });
  const args = path.match(re).slice(1).map(decodeURIComponent);
  try {
    if (!isPublic && !noVault && !state.vault) {
      view.append(h('h1', {}, 'No vault'), h('p', {}, 'No vault is visible to you. Create one with ', h('code', {}, 'arca vault create NAME'),
        ' (or ', h('code', {}, 'arca quickstart'), '), or ask an Owner for a role on one.'));
    } else {
      await page(view, query, ...args);
    }
  } catch (e) {
    if (e instanceof A.APIError && e.status === 401) return;
    if (!view.querySelector('h1')) view.append(h('h1', {}, 'Could not show this page'));
    view.append(errorBox(e));
  }
  if (gen !== generation) return;
  clear(main).append(view);
  main.dataset.shown = location.hash; // which route is on screen (tests wait for it)
  main.dataset.renderMs = String(Math.round(performance.now() - t0)); // how long it took, API calls included
  const h1 = view.querySelector('h1');
  document.title = `${h1 ? h1.textContent : 'Arca'} · Arca vault`;
  if (h1) announce(h1.textContent);
  main.focus({ preventScroll: true });
}

// refresh re-runs the page after ms while it is still shown.
function refreshIn(ms) {
  const gen = generation;
  state.timers.push(setTimeout(() => { if (gen === generation) route(); }, ms));
}

window.addEventListener('hashchange', route);
route(); // a module runs once the document is parsed

const V = () => A.vaultPath(state.vault);

// ---- sign-in ----

async function pageSignIn(view) {
  document.getElementById('top').hidden = true;
  const msg = sessionStorage.getItem('signin-message');
  sessionStorage.removeItem('signin-message');
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false', id: 'token' });
  const out = h('div', { id: 'signin-result' });
  const form = h('form', { class: 'signin', id: 'signin-form' },
    h('h1', {}, 'Sign in to the Arca vault'),
    msg ? h('div', { class: 'notice warn', role: 'status', id: 'signin-message' }, msg) : null,
    h('p', {}, 'Paste an API token. ', h('code', {}, 'arca vault init'), ' prints the first one; ', h('code', {}, 'arca token create NAME --principal P'), ' makes more.'),
    h('p', {}, h('label', { for: 'token' }, 'API token'), h('br'), input),
    h('p', { class: 'muted' }, 'The vault keeps you signed in with a cookie scripts cannot read, for 12 hours or until the token expires or is revoked.'),
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    try {
      const s = await A.signIn(input.value.trim());
      input.value = '';
      state.principal = '';
      await startSession(s);
      let next = sessionStorage.getItem('after-signin') || '#/';
      if (next === '#/signin') next = '#/';
      sessionStorage.removeItem('after-signin');
      if (location.hash === next) route(); else location.hash = next;
    } catch (err) {
      out.append(errorBox(err, 'Sign-in'));
    }
  });
  view.append(form);
  setTimeout(() => input.focus(), 0);
}

function pageNotFound(view) {
  view.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', link('#/', 'Go to the overview.')));
}

// ---- shared data ----

async function vaultData({ jobsLimit = 1000 } = {}) {
  const [ins, pols, rps, js] = await Promise.all([
    A.get(`${V()}/instances`), A.get(`${V()}/policies`), A.get(`${V()}/recovery-points`), A.get(`${V()}/jobs?limit=${jobsLimit}`),
  ]);
  return { instances: ins.items || [], policies: pols.items || [], points: rps.items || [], jobs: js.items || [] };
}

// policyPeriod is the time between a policy's runs, in ms (null when it
// cannot be told from the schedule).
function policyPeriod(schedule) {
  if (!schedule) return null;
  let m = schedule.match(/^R\d*\/[^/]+\/PT(\d+)H$/);
  if (m) return Number(m[1]) * 3600e3;
  if (/^R\d*\/[^/]+\/P1D$/.test(schedule)) return DAY;
  m = schedule.trim().split(/\s+/);
  if (m.length === 5) {
    if (/^\d+$/.test(m[1]) && m[2] === '*' && m[4] === '*') return DAY;
    const step = m[1].match(/^\*\/(\d+)$/);
    if (step) return Number(step[1]) * 3600e3;
    if (m[1] === '*') return 3600e3;
  }
  return null;
}

const isBackup = (j) => j.type === 'OnDemandBackup' || j.type === 'ScheduledBackup';

function protection(inst, pol, points, now) {
  if (inst.protectionState === 'ProtectionStopped') return { state: 'ProtectionStopped', last: lastPoint(inst, points) };
  const last = lastPoint(inst, points);
  if (!last) return { state: 'Never', last };
  const period = policyPeriod(pol && pol.schedule);
  const age = now - new Date(last.time).getTime();
  // Late: more than one missed run (twice the period, plus an hour for
  // jitter and the backup's own duration).
  if (period && age > 2 * period + 3600e3) return { state: 'Late', last, age, period };
  return { state: 'On time', last, age, period };
}

function lastPoint(inst, points) {
  let last = null;
  for (const p of points) if (p.instance === inst.name && (!last || p.time > last.time)) last = p;
  return last;
}

// ---- overview ----

async function pageOverview(view) {
  view.append(h('h1', {}, `Overview of vault ${state.vault}`));
  if (!state.vault) {
    view.append(h('p', {}, 'No vault is visible to you. Create one with ', h('code', {}, 'arca vault create NAME'), ' or ask an Owner for a role.'));
    return;
  }
  const [d, usage] = await Promise.all([vaultData(), A.get(`${V()}/usage`).catch(() => null)]);
  const now = Date.now();
  const pol = Object.fromEntries(d.policies.map((p) => [p.name, p]));
  const recent = d.jobs.filter((j) => now - new Date(j.endedAt || j.createdAt).getTime() < DAY);
  const failed = recent.filter((j) => j.state === 'Failed');
  const warned = recent.filter((j) => j.state === 'CompletedWithWarnings');
  const running = d.jobs.filter((j) => !TERMINAL.includes(j.state));
  const used = d.points.reduce((a, p) => a + (p.bytes || 0), 0);
  const iuse = Object.fromEntries(((usage && usage.instances) || []).map((u) => [u.instance, u]));
  view.append(h('div', { class: 'cards' },
    card('Instances', d.instances.length, `${d.instances.filter((i) => i.protectionState === 'ProtectionConfigured').length} protected`),
    card('Failed jobs, 24 h', failed.length, `${warned.length} with warnings`, failed.length ? 'bad' : ''),
    card('Running jobs', running.length, link('#/jobs', 'see jobs')),
    card('Recovery points', d.points.length, `${bytes(used)} of data in them`),
    usage ? card('Storage used', bytes(usage.storedBytes), 'added to the repositories after dedup and compression') : null,
    usage && usage.softDeletedRecoveryPoints ? card('Soft-deleted points', usage.softDeletedRecoveryPoints,
      h('span', {}, `${bytes(usage.softDeletedBytes)}, kept until purged; `, link('#/points?deleted=only', 'see them')), 'warn') : null));
  const clusters = [...new Set(d.instances.map((i) => i.cluster))].sort();
  for (const c of clusters) {
    view.append(h('h2', {}, `Cluster ${c}`));
    const rows = d.instances.filter((i) => i.cluster === c).map((i) => {
      const pr = protection(i, pol[i.policy], d.points, now);
      const ij = recent.filter((j) => j.instance === i.name);
      const f = ij.filter((j) => j.state === 'Failed').length; const w = ij.filter((j) => j.state === 'CompletedWithWarnings').length;
      const ipts = d.points.filter((p) => p.instance === i.name);
      return {
        attrs: { dataset: { instance: i.name } },
        cells: [link(`#/instances/${A.enc(i.name)}`, i.name), badge(i.protectionState), badge(pr.state),
          pr.last ? h('span', {}, time(pr.last.time), h('br'), h('span', { class: 'muted' }, ago(pr.last.time, now),
            pr.period ? ` (policy: every ${duration(pr.period / 1000)})` : '')) : 'none',
          f || w ? link(`#/jobs?instance=${A.enc(i.name)}`, `${f} failed, ${w} warned`) : '0',
          `${ipts.length}`, bytes(ipts.reduce((a, p) => a + (p.bytes || 0), 0)),
          iuse[i.name] ? bytes(iuse[i.name].storedBytes) : 'unknown',
          iuse[i.name] && iuse[i.name].dedupRatio ? `${iuse[i.name].dedupRatio.toFixed(2)}x` : 'unknown'],
      };
    });
    view.append(table(`Instances on cluster ${c}`, ['Instance', 'Protection', 'Backups', 'Last good backup', 'Failed or warned jobs, 24 h',
      { label: 'Points', num: true }, { label: 'Data in points', num: true }, { label: 'Storage used', num: true }, { label: 'Dedup ratio', num: true }], rows));
  }
  if (!clusters.length) view.append(h('p', {}, 'No backup instances yet: ', h('code', {}, 'arca instance create'), ' protects a cluster.'));
  view.append(h('p', { class: 'muted' }, 'Data in points is the logical size the backups recorded; storage used is what each backup added to the repository after dedup and compression, soft-deleted points included (space freed by prune is not subtracted, so it is an approximation); the dedup ratio divides the one by the other over the points that know both (unknown for points from before it was measured). ',
    h('code', {}, 'arca repo stats'), ' shows a repository’s exact stored size.'));
  if (running.length) refreshIn(5000);
}

function card(title, big, sub, cls = '') {
  return h('div', { class: `card ${cls}` }, h('div', {}, title), h('div', { class: 'big' }, String(big)), h('div', { class: 'muted' }, sub));
}

// ---- instance ----

async function pageInstance(view, _q, name) {
  const path = `${V()}/instances/${A.enc(name)}`;
  const inst = await A.get(path);
  const scope = `/vaults/${state.vault}/instances/${name}`;
  const [pol, pts, js, mayBackup, mayProtect, mayValidate, mayAssign] = await Promise.all([
    A.get(`${V()}/policies/${A.enc(inst.policy)}`).catch(() => null),
    A.get(`${V()}/recovery-points?instance=${A.enc(name)}`), A.get(`${V()}/jobs?instance=${A.enc(name)}&limit=20`),
    can('instances/backup/action', scope), can('instances/protection/action', scope), can('instances/validate/action', scope),
    can('roleAssignments/write', '/'),
  ]);
  const out = h('div', { id: 'instance-result' });
  view.append(h('h1', {}, `Instance ${name}`),
    h('div', { class: 'grid' },
      h('div', {}, 'Cluster'), h('div', {}, inst.cluster),
      h('div', {}, 'Protection'), h('div', { id: 'protection-state' }, badge(inst.protectionState), inst.stopMode ? ` (${inst.stopMode})` : ''),
      h('div', {}, 'Policy'), h('div', {}, link(`#/policies/${A.enc(inst.policy)}`, inst.policy), pol ? ` — ${pol.schedule}` : ''),
      h('div', {}, 'Storage location'), h('div', {}, h('code', {}, inst.storageLocation)),
      h('div', {}, 'Snapshot location'), h('div', {}, inst.snapshotLocation || 'none')));
  const actions = h('div', { class: 'actions' });
  if (mayBackup && inst.protectionState === 'ProtectionConfigured') {
    const keep = h('input', { id: 'backup-retention', size: 6, placeholder: 'policy', pattern: 'P[0-9YMWD]+' });
    const tier = h('input', { id: 'backup-vault-tier', type: 'checkbox' });
    actions.append(h('button', { class: 'primary', id: 'backup-now', type: 'button', onclick: async () => {
      clear(out);
      const body = {};
      if (keep.value.trim()) body.retention = keep.value.trim();
      if (tier.checked) body.vaultTier = true;
      try {
        const j = await A.post(`${path}/backup`, body);
        location.hash = `#/jobs/${A.enc(j.id)}`;
      } catch (e) { out.append(errorBox(e, 'Backup now')); }
    } }, 'Back up now'), h('label', { for: keep.id }, 'keep for'), keep,
    h('span', {}, tier, ' ', h('label', { for: tier.id }, 'volume data to the vault tier too')));
  }
  if (mayValidate) {
    actions.append(h('button', { type: 'button', id: 'validate', onclick: () => validate(false) }, 'Validate prerequisites'));
  }
  if (mayProtect) {
    if (inst.protectionState === 'ProtectionConfigured') {
      const mode = h('select', { id: 'stop-mode' }, ['retain-forever', 'retain-per-policy', 'delete-data'].map((m) => h('option', { value: m }, m)));
      actions.append(h('label', { for: 'stop-mode' }, 'Stop mode'), mode, h('button', { class: 'danger', type: 'button', id: 'stop', onclick: async () => {
        if (mode.value === 'delete-data' && !confirm(`Stop protecting ${name} and delete all its recovery points?`)) return;
        clear(out);
        try { await A.api('POST', `${path}/stop-protection`, { mode: mode.value }, { ifMatch: inst.__etag }); route(); } catch (e) { out.append(errorBox(e, 'Stop protection')); }
      } }, 'Stop protection'));
    } else {
      actions.append(h('button', { type: 'button', id: 'resume', onclick: async () => {
        clear(out);
        try { await A.api('POST', `${path}/resume-protection`, undefined, { ifMatch: inst.__etag }); route(); } catch (e) { out.append(errorBox(e, 'Resume protection')); }
      } }, 'Resume protection'));
    }
  }
  if (!mayBackup && !mayProtect && !mayValidate) actions.append(h('span', { class: 'muted' }, 'Your roles here allow reading only.'));
  view.append(actions, out);

  async function validate(assign) {
    clear(out).append(h('p', { role: 'status' }, 'Running the prerequisite checks in the cluster…'));
    try {
      const rep = await A.post(`${path}/validate${assign ? '?assignMissingRoles=true' : ''}`, {});
      clear(out).append(h('h2', {}, 'Validation'), reportTable(rep));
      if (!rep.passed && (rep.checks || []).some((c) => c.fix) && mayAssign) {
        out.append(h('button', { type: 'button', id: 'assign-missing', onclick: () => validate(true) }, 'Assign missing roles'));
      }
    } catch (e) { clear(out).append(errorBox(e, 'Validation')); }
  }

  view.append(h('h2', {}, 'Backup configuration'), h('pre', {}, JSON.stringify(inst.backupConfiguration || {}, null, 2)));
  if (pol) view.append(h('h2', {}, 'Retention'), retentionTable(pol.retention));
  view.append(h('h2', {}, 'Recent jobs'), jobsTable(js.items || []));
  view.append(h('h2', {}, 'Recovery points'), pointsTable((pts.items || []).slice().reverse(), await can('restores/action')));
  view.append(h('h2', {}, 'Charts'), ...instanceCharts(name, js.items || [], pts.items || []));
}

function retentionTable(ret) {
  return table('Retention rules', ['Rule', 'Keep for', 'Datastore'], Object.entries(ret || {}).map(([k, r]) => ({ cells: [k, r.duration, r.datastore || 'operational'] })));
}

// ---- jobs ----

function jobProgressText(j) {
  const p = j.progress;
  if (!p) return '';
  return `${p.itemsDone}${p.itemsTotal ? `/${p.itemsTotal}` : ''} items, ${bytes(p.bytesDone)}${p.bytesTotal ? ` of ${bytes(p.bytesTotal)}` : ''}`;
}

function jobsTable(jobs) {
  return table('Jobs', ['Job', 'Type', 'Instance', 'State', 'Started', { label: 'Duration', num: true }, 'Progress'], jobs.map((j) => ({
    attrs: { dataset: { job: j.id, state: j.state } },
    cells: [link(`#/jobs/${A.enc(j.id)}`, j.id), j.type, j.instance ? link(`#/instances/${A.enc(j.instance)}`, j.instance) : '', badge(j.state),
      time(j.startedAt || j.createdAt), j.startedAt ? duration(((j.endedAt ? new Date(j.endedAt) : new Date()) - new Date(j.startedAt)) / 1000) : '—',
      jobProgressText(j)],
  })), { id: 'jobs-table', empty: 'No jobs match.' });
}

async function pageJobs(view, q) {
  view.append(h('h1', {}, 'Jobs'));
  const ins = await A.get(`${V()}/instances`);
  const sel = (name, label, opts) => {
    const s = h('select', { name, id: `filter-${name}` }, h('option', { value: '' }, 'any'), opts.map((o) => h('option', { value: o, selected: q.get(name) === o }, o)));
    return h('label', { for: s.id }, label, s);
  };
  const form = h('form', { class: 'filters', id: 'job-filters' },
    sel('instance', 'Instance', (ins.items || []).map((i) => i.name)),
    sel('type', 'Type', ['OnDemandBackup', 'ScheduledBackup', 'Restore', 'Retention', 'Verification']),
    sel('state', 'State', ['Queued', 'InProgress', 'Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled']),
    h('label', { for: 'filter-limit' }, 'At most', h('input', { id: 'filter-limit', name: 'limit', type: 'number', min: 1, max: 1000, value: q.get('limit') || 100 })),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    location.hash = `#/jobs?${p}`;
  });
  const p = new URLSearchParams();
  for (const k of ['instance', 'type', 'state']) if (q.get(k)) p.set(k, q.get(k));
  p.set('limit', q.get('limit') || '100');
  const js = await A.get(`${V()}/jobs?${p}`);
  view.append(form, jobsTable(js.items || []));
  if ((js.items || []).some((j) => !TERMINAL.includes(j.state))) refreshIn(3000);
}

async function pageJob(view, _q, id) {
  const j = await A.get(`${V()}/jobs/${A.enc(id)}`);
  view.append(h('h1', {}, `Job ${j.id}`));
  const p = j.progress || {};
  const started = j.startedAt ? new Date(j.startedAt) : null;
  const elapsed = started ? ((j.endedAt ? new Date(j.endedAt) : new Date()) - started) / 1000 : 0;
  const rate = p.bytesPerSecond || (elapsed > 0 && p.bytesDone ? p.bytesDone / elapsed : 0);
  let eta = p.etaSeconds || null;
  if (!eta && rate > 0 && p.bytesTotal > p.bytesDone) eta = (p.bytesTotal - p.bytesDone) / rate;
  const running = !TERMINAL.includes(j.state);
  const frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : (p.itemsTotal ? p.itemsDone / p.itemsTotal : null);
  view.append(h('div', { class: 'grid', id: 'job-summary' },
    h('div', {}, 'Phase'), h('div', { id: 'job-state', dataset: { state: j.state } }, badge(j.state)),
    h('div', {}, 'Type'), h('div', {}, j.type),
    h('div', {}, 'Instance'), h('div', {}, j.instance ? link(`#/instances/${A.enc(j.instance)}`, j.instance) : '—'),
    h('div', {}, 'Started'), h('div', {}, time(j.startedAt || j.createdAt)),
    h('div', {}, 'Ended'), h('div', {}, time(j.endedAt)),
    h('div', {}, 'Items'), h('div', { id: 'job-items' }, p.itemsDone !== undefined ? `${p.itemsDone}${p.itemsTotal ? ` of ${p.itemsTotal}` : ''}` : '—'),
    h('div', {}, 'Bytes'), h('div', { id: 'job-bytes' }, p.bytesDone !== undefined ? `${bytes(p.bytesDone)}${p.bytesTotal ? ` of ${bytes(p.bytesTotal)}` : ''}` : '—'),
    h('div', {}, 'Rate'), h('div', { id: 'job-rate' }, rate ? `${bytes(rate)}/s` : '—'),
    h('div', {}, 'Time left'), h('div', { id: 'job-eta' }, running ? (eta ? duration(eta) : 'unknown') : '—'),
    h('div', {}, 'Cluster job'), h('div', {}, j.externalRef || '—')));
  if (frac !== null) view.append(h('label', { for: 'job-progress' }, 'Progress'), h('progress', { id: 'job-progress', max: 1, value: running ? frac : 1 }, `${Math.round(frac * 100)}%`));
  const out = h('div');
  if (running && await can('jobs/cancel/action')) {
    view.append(h('div', { class: 'actions' }, h('button', { class: 'danger', type: 'button', id: 'cancel-job', onclick: async () => {
      try { await A.post(`${V()}/jobs/${A.enc(id)}/cancel`, {}); route(); } catch (e) { out.append(errorBox(e, 'Cancel')); }
    } }, 'Cancel job')));
  }
  view.append(out);
  if (j.errors && j.errors.length) view.append(h('h2', {}, 'Errors'), issuesTable('Errors', j.errors));
  if (j.warnings && j.warnings.length) view.append(h('h2', {}, 'Warnings'), issuesTable('Warnings', j.warnings));
  if (p.counts && Object.keys(p.counts).length) {
    view.append(h('h2', {}, j.type === 'Restore' ? 'Objects by action' : 'Objects by type'),
      table('Counts', ['Name', { label: 'Count', num: true }], Object.entries(p.counts).sort().map(([k, v]) => ({ cells: [k, String(v)] })), { id: 'job-counts' }));
  }
  if (j.subTasks && j.subTasks.length) view.append(h('h2', {}, 'Steps'), table('Steps', ['Step', 'State'], j.subTasks.map((s) => ({ cells: [s.name, s.state] }))));
  if (isBackup(j) && TERMINAL.includes(j.state) && j.state !== 'Failed' && j.state !== 'Cancelled') {
    view.append(h('p', {}, link(`#/points/${A.enc(`rp-${j.id}`)}`, 'Open the recovery point of this backup', { id: 'open-point' })));
  }
  if (j.parameters) view.append(h('details', {}, h('summary', {}, 'Parameters'), h('pre', {}, JSON.stringify(j.parameters, null, 2))));
  if (running) refreshIn(2000);
}

// ---- recovery points ----

function pointsTable(points, mayRestore) {
  return table('Recovery points', ['Recovery point', 'Instance', 'Taken', 'Tag', 'Datastore', 'State', 'Expires', { label: 'Items', num: true }, { label: 'Data', num: true }, ''],
    points.map((p) => ({
      attrs: { dataset: { point: p.id } },
      cells: [link(`#/points/${A.enc(p.id)}`, p.id), p.instance, time(p.time), p.tag, p.datastore, p.state ? badge(p.state) : '',
        p.state === 'SoftDeleted' ? h('span', {}, 'purged ', time(p.purgeAt)) : (p.expiresAt ? time(p.expiresAt) : 'kept'), String(p.items), bytes(p.bytes),
        mayRestore && p.state !== 'SoftDeleted' ? link(`#/restore?point=${A.enc(p.id)}`, 'Restore…', { class: 'restore-link' }) : ''],
    })), { id: 'points-table' });
}

async function pagePoints(view, q) {
  view.append(h('h1', {}, 'Recovery points'));
  const p = new URLSearchParams();
  if (q.get('instance')) p.set('instance', q.get('instance'));
  if (q.get('deleted')) p.set('deleted', q.get('deleted'));
  const [rps, ins] = await Promise.all([A.get(`${V()}/recovery-points?${p}`), A.get(`${V()}/instances`)]);
  const instSel = h('select', { name: 'instance', id: 'pf-instance' }, h('option', { value: '' }, 'any'),
    (ins.items || []).map((i) => h('option', { value: i.name, selected: q.get('instance') === i.name }, i.name)));
  const delSel = h('select', { name: 'deleted', id: 'pf-deleted' }, [['', 'not listed'], ['include', 'listed too'], ['only', 'only them']].map(([v, l]) =>
    h('option', { value: v, selected: (q.get('deleted') || '') === v }, l)));
  const form = h('form', { class: 'filters' }, h('label', { for: instSel.id }, 'Instance', instSel), h('label', { for: delSel.id }, 'Soft-deleted points', delSel),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) n.set(k, v);
    location.hash = `#/points?${n}`;
  });
  view.append(form, pointsTable((rps.items || []).slice().reverse(), await can('restores/action')));
}

async function pagePoint(view, _q, id) {
  const p = await A.get(`${V()}/recovery-points/${A.enc(id)}`);
  const [mayRestore, mayDelete, mayUndelete] = await Promise.all([can('restores/action'), can('recoveryPoints/delete'), can('recoveryPoints/undelete/action')]);
  const out = h('div');
  view.append(h('h1', {}, `Recovery point ${p.id}`),
    h('div', { class: 'grid' },
      h('div', {}, 'Instance'), h('div', {}, link(`#/instances/${A.enc(p.instance)}`, p.instance)),
      h('div', {}, 'Taken'), h('div', {}, time(p.time)),
      h('div', {}, 'Repository ID'), h('div', {}, h('code', {}, p.repositoryId || '—')),
      h('div', {}, 'Tag'), h('div', {}, p.tag), h('div', {}, 'Datastore'), h('div', {}, p.datastore),
      h('div', {}, 'State'), h('div', {}, p.state ? badge(p.state) : '—'),
      h('div', {}, 'Expires'), h('div', {}, p.expiresAt ? time(p.expiresAt) : 'kept until deleted'),
      h('div', {}, 'Objects'), h('div', {}, String(p.items)), h('div', {}, 'Data'), h('div', {}, bytes(p.bytes)),
      h('div', {}, 'Backup job'), h('div', {}, p.jobId ? link(`#/jobs/${A.enc(p.jobId)}`, p.jobId) : '—')),
    h('div', { class: 'actions' }, p.state === 'SoftDeleted' ? h('span', {}, badge('SoftDeleted'), ' until ', time(p.purgeAt), '; restore it after undeleting it.')
      : mayRestore ? link(`#/restore?point=${A.enc(p.id)}`, 'Restore this point…', { class: 'button primary', id: 'restore-point' })
        : h('span', { class: 'muted', id: 'restore-hidden' }, 'Restoring needs restores/action at this vault, which your roles do not grant.'),
    p.state !== 'SoftDeleted' && mayDelete ? h('button', { type: 'button', class: 'danger', id: 'delete-point', onclick: async () => {
      if (!confirm(`Delete recovery point ${p.id}?`)) return;
      clear(out);
      try { await A.api('DELETE', `${V()}/recovery-points/${A.enc(p.id)}`, undefined, { ifMatch: p.__etag || '*' }); route(); } catch (e) { out.append(errorBox(e, 'Delete')); }
    } }, 'Delete…') : null,
    p.state === 'SoftDeleted' && mayUndelete ? h('button', { type: 'button', id: 'undelete-point', onclick: async () => {
      clear(out);
      try { await A.post(`${V()}/recovery-points/${A.enc(p.id)}/undelete`, {}); route(); } catch (e) { out.append(errorBox(e, 'Undelete')); }
    } }, 'Undelete') : null), out);
  view.append(verificationView(p, mayRestore));
  const sect = h('section', { id: 'contents', 'aria-labelledby': 'contents-h' }, h('h2', { id: 'contents-h' }, 'Contents'));
  view.append(sect);
  const served = await contentsBrowser(sect, p);
  if (served) {
    view.append(volumesView(p));
    const all = await A.get(`${V()}/recovery-points?instance=${A.enc(p.instance)}`).catch(() => ({ items: [] }));
    view.append(diffView(p, all.items || []));
  }
}

// verificationView: the point's latest verification verdict and a form to
// verify it again (a Verification job: restore into sandbox namespaces of
// a cluster, compare, delete the sandbox).
function verificationView(p, mayVerify) {
  const v = p.verification;
  const sect = h('section', { id: 'verification', 'aria-labelledby': 'verification-h' }, h('h2', { id: 'verification-h' }, 'Verification'));
  if (v) {
    sect.append(h('p', { id: 'verification-verdict' }, badge(v.verdict), ' ', time(v.time), ` on cluster ${v.cluster}, job `, link(`#/jobs/${A.enc(v.jobId)}`, v.jobId),
      `: ${v.objectsCompared} objects compared, ${v.packsRead} of ${v.packsChecked} packs read whole, sandbox ${v.cleanedUp ? 'deleted' : 'NOT deleted'}.`));
    if (v.codes && v.codes.length) sect.append(h('p', {}, 'Codes: ', v.codes.map((c, i) => [i ? ', ' : '', codeLink(c)])));
    if (v.differences && v.differences.length) sect.append(issuesTable('Differences', v.differences));
  } else {
    sect.append(h('p', { class: 'muted' }, 'Not verified yet.'));
  }
  if (!mayVerify || p.state === 'SoftDeleted') return sect;
  const target = h('input', { id: 'verify-cluster', required: true, size: 12 });
  const share = h('input', { id: 'verify-read', type: 'number', min: 0, max: 100, value: 10, size: 4 });
  const skip = h('input', { id: 'verify-skip-volumes', type: 'checkbox' });
  const out = h('div');
  const form = h('form', { class: 'filters', id: 'verify-form' },
    h('label', { for: target.id }, 'Verify in cluster', target), h('label', { for: share.id }, 'Packs read whole (%)', share),
    h('span', {}, skip, ' ', h('label', { for: skip.id }, 'claims without data')), h('button', { type: 'submit', id: 'verify-run' }, 'Verify'));
  A.get(`${V()}/instances/${A.enc(p.instance)}`).then((i) => { if (!target.value) target.value = i.cluster; }).catch(() => {});
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    const body = { targetCluster: target.value.trim(), readDataPercent: Number(share.value) || 0 };
    if (skip.checked) body.skipVolumes = true;
    try {
      const j = await A.post(`${V()}/recovery-points/${A.enc(p.id)}/verify`, body);
      location.hash = `#/jobs/${A.enc(j.id)}`;
    } catch (err) { out.append(errorBox(err, 'Verify')); }
  });
  sect.append(form, out);
  return sect;
}

// contentsBrowser: namespaces, then types, then objects, then one object's
// YAML, from the vault's contents API (the extension reads the point).
async function contentsBrowser(sect, p) {
  const base = `${V()}/recovery-points/${A.enc(p.id)}/contents`;
  let root;
  try {
    root = await A.get(base);
  } catch (e) {
    if (e instanceof A.APIError && (e.code === 'RouteNotFound' || e.status === 405)) {
      sect.append(h('p', { class: 'notice info' }, 'This vault does not serve the contents of recovery points yet: ',
        h('code', {}, 'arca local list'), ' and ', h('code', {}, 'arca local diff'), ' read the repository directly.'));
      return false;
    }
    sect.append(errorBox(e, 'Contents'));
    return false;
  }
  renderContents(sect, base, root);
  return true;
}

function renderContents(sect, base, root) {
  const cols = h('div', { class: 'browser' });
  const yaml = h('div', { id: 'object-yaml' });
  const list = (label, items, onpick, id) => {
    const ul = h('ul', { 'aria-label': label, id });
    for (const it of items) {
      ul.append(h('li', {}, h('button', { type: 'button', 'aria-pressed': 'false', dataset: { name: it.name }, onclick: (e) => {
        for (const b of ul.querySelectorAll('button')) b.setAttribute('aria-pressed', 'false');
        e.currentTarget.setAttribute('aria-pressed', 'true');
        onpick(it);
      } }, `${it.name === '-' ? '(cluster-scoped)' : it.name}${it.count !== undefined ? ` (${it.count})` : ''}`)));
    }
    return h('div', {}, h('h3', {}, label), ul);
  };
  const nsCol = h('div'); const typeCol = h('div'); const objCol = h('div');
  cols.append(nsCol, typeCol, objCol);
  nsCol.append(list('Namespaces', contentsItems(root, 'namespaces'), async (ns) => {
    clear(typeCol); clear(objCol); clear(yaml);
    const r = await A.get(`${base}?namespace=${A.enc(ns.name)}`).catch((e) => { typeCol.append(errorBox(e)); return null; });
    if (!r) return;
    typeCol.append(list('Types', contentsItems(r, 'types'), async (ty) => {
      clear(objCol); clear(yaml);
      const o = await A.get(`${base}?namespace=${A.enc(ns.name)}&type=${A.enc(ty.name)}`).catch((e) => { objCol.append(errorBox(e)); return null; });
      if (!o) return;
      objCol.append(list('Objects', contentsItems(o, 'objects'), async (obj) => {
        clear(yaml);
        const y = await A.get(`${base}?namespace=${A.enc(ns.name)}&type=${A.enc(ty.name)}&name=${A.enc(obj.name)}`).catch((e) => { yaml.append(errorBox(e)); return null; });
        if (!y) return;
        yaml.append(h('h3', {}, `${ty.name} ${ns.name}/${obj.name}`), h('pre', { tabindex: 0, id: 'object-yaml-text', 'aria-label': `YAML of ${obj.name}` },
          typeof y.object === 'string' ? y.object : JSON.stringify(y.object || y, null, 2)),
        ...(y.truncated ? [h('p', { class: 'muted' }, 'Cut at the vault’s read limit.')] : []));
      }, 'objects-list'));
    }, 'types-list'));
  }, 'namespaces-list'));
  sect.append(cols, yaml);
  if (root.hidden) sect.append(h('p', { class: 'muted' }, `${root.hidden} objects are not listed: the cluster owner’s trust policy keeps them from this vault.`));
}

// volumesView: the point's volumes (GET …/volumes: what the snapshot
// records and the vault-tier data say, per claim) and, for a volume with
// vault-tier data, a file browser (GET …/files, …/files/content).
function volumesView(p) {
  const sect = h('section', { id: 'volumes', 'aria-labelledby': 'volumes-h' }, h('h2', { id: 'volumes-h' }, 'Volumes'));
  const files = h('div', { id: 'volume-files' });
  sect.append(h('p', { role: 'status', id: 'volumes-loading' }, 'The extension is reading the volume records…'));
  A.get(`${V()}/recovery-points/${A.enc(p.id)}/volumes`).then((r) => {
    sect.querySelector('#volumes-loading').remove();
    const vols = r.volumes || [];
    sect.append(table('Volumes', ['Claim', 'PV', 'Driver', 'Storage class', { label: 'Size', num: true }, 'Snapshot', 'Vault-tier data'], vols.map((v) => ({
      attrs: { dataset: { name: v.name } },
      cells: [v.name, v.pv || '—', v.driver || '—', v.storageClass || '—', v.size ? bytes(v.size) : '—',
        v.skippedCode ? h('span', { title: v.skippedMessage || '' }, 'skipped: ', codeLink(v.skippedCode)) : (v.snapshotHandle ? h('code', {}, v.snapshotHandle) : '—'),
        v.data ? h('span', {}, `${v.data.files} files, ${bytes(v.data.bytes)} (${bytes(v.data.newBytes)} new) `,
          h('button', { type: 'button', class: 'browse-volume', dataset: { name: v.name }, 'aria-label': `Browse the files of ${v.name}`,
            onclick: () => fileBrowser(files, p, v.name, '/') }, 'Browse files')) : 'snapshot only'],
    })), { id: 'volumes-table', empty: 'This recovery point holds no volumes.' }));
    if (r.hidden) sect.append(h('p', { class: 'muted' }, `${r.hidden} volumes are not listed: the cluster owner’s trust policy keeps them from this vault.`));
    sect.append(files);
  }).catch((e) => { clear(sect).append(h('h2', { id: 'volumes-h' }, 'Volumes'), errorBox(e, 'Volumes')); });
  return sect;
}

// fileBrowser lists directory dir of a vault-tier volume: a directory
// opens on click, a file shows its first 64 KiB (reading content needs
// storageLocations/data/read; the vault's refusal is shown as is).
async function fileBrowser(box, p, volume, dir) {
  const base = `${V()}/recovery-points/${A.enc(p.id)}/files`;
  clear(box).append(h('p', { role: 'status' }, `Listing ${volume}:${dir}…`));
  let r;
  try { r = await A.get(`${base}?volume=${A.enc(volume)}&path=${A.enc(dir)}`); } catch (e) { clear(box).append(errorBox(e, 'Files')); return; }
  const view = h('div', { id: 'file-content' });
  const parent = dir === '/' ? null : dir.replace(/\/[^/]*$/, '') || '/';
  const ul = h('ul', { 'aria-label': `Files of ${volume} in ${dir}`, id: 'files-list' });
  if (parent) ul.append(h('li', {}, h('button', { type: 'button', dataset: { path: parent }, onclick: () => fileBrowser(box, p, volume, parent) }, '.. (up)')));
  for (const f of r.files || []) {
    const name = f.path.slice(f.path.lastIndexOf('/') + 1);
    const open = f.type === 'dir' ? () => fileBrowser(box, p, volume, f.path) : f.type === 'file' || f.type === 'hardlink' ? async () => {
      clear(view).append(h('p', { role: 'status' }, `Reading ${f.path}…`));
      try {
        const c = await A.get(`${base}/content?volume=${A.enc(volume)}&path=${A.enc(f.path)}&length=65536`);
        const text = new TextDecoder().decode(Uint8Array.from(atob(c.data || ''), (ch) => ch.charCodeAt(0)));
        clear(view).append(h('h4', {}, `${volume}:${f.path} (${bytes(c.size)})`),
          h('pre', { tabindex: 0, id: 'file-content-text', 'aria-label': `Content of ${f.path}` }, text),
          c.eof ? null : h('p', { class: 'muted' }, 'Only the first 64 KiB are shown; arca recovery-point files cat prints the whole file.'));
      } catch (e) { clear(view).append(errorBox(e, 'Read')); }
    } : null;
    const label = `${name}${f.type === 'dir' ? '/' : ''}${f.type === 'symlink' ? ` → ${f.link}` : ''}`;
    ul.append(h('li', {}, open ? h('button', { type: 'button', dataset: { path: f.path }, onclick: open }, label) : h('span', {}, label),
      f.type === 'file' ? h('span', { class: 'muted' }, ` ${bytes(f.size)}`) : null));
  }
  clear(box).append(h('h3', {}, `Files of ${volume}: ${dir}`), ul,
    r.continue ? h('p', { class: 'muted' }, 'More entries follow; list them with arca recovery-point files ls.') : null, view);
}

// diffView compares the point with the live cluster or another point
// (GET …/diff, computed by the extension).
function diffView(p, points) {
  const sect = h('section', { id: 'diff', 'aria-labelledby': 'diff-h' }, h('h2', { id: 'diff-h' }, 'Compare'));
  const against = h('select', { id: 'diff-against' }, h('option', { value: '' }, 'the live cluster'),
    points.filter((x) => x.id !== p.id && x.instance === p.instance).map((x) => h('option', { value: x.id }, `point ${x.id} (${new Date(x.time).toISOString().slice(0, 16).replace('T', ' ')})`)));
  const out = h('div', { id: 'diff-result' });
  const form = h('form', { class: 'filters' }, h('label', { for: against.id }, 'Compare this point with', against), h('button', { type: 'submit', id: 'diff-run' }, 'Compare'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out).append(h('p', { role: 'status' }, 'The extension is comparing…'));
    const q = against.value ? `against=${A.enc(against.value)}` : 'live=true';
    try {
      const d = await A.get(`${V()}/recovery-points/${A.enc(p.id)}/diff?${q}`);
      clear(out).append(diffTable(d));
    } catch (err) { clear(out).append(errorBox(err, 'Compare')); }
  });
  sect.append(form, out);
  return sect;
}

function diffTable(d) {
  return h('div', {},
    h('p', { id: 'diff-counts' }, `${d.added || 0} added, ${d.removed || 0} removed, ${d.modified || 0} changed, ${d.unchanged || 0} unchanged.`),
    table('Changes', ['Change', 'Object', 'Fields'], (d.changes || []).map((c) => ({
      cells: [badge(c.type), c.object || `${c.resource} ${c.namespace ? `${c.namespace}/` : ''}${c.name}`,
        (c.fields || []).map((f) => h('div', {}, h('code', {}, f.path), f.old || f.new ? `: ${f.old || '∅'} → ${f.new || '∅'}` : ''))],
    })), { empty: 'No differences.' }),
    d.continue ? h('p', { class: 'muted' }, 'More changes follow; narrow the comparison with the CLI (arca recovery-point diff).') : null);
}

// contentsItems accepts a list of names or of {name, count} objects.
function contentsItems(r, key) {
  const v = (r && (r[key] || r.items)) || [];
  return v.map((x) => (typeof x === 'string' ? { name: x } : x));
}

// ---- restore wizard ----

async function pageRestore(view, q) {
  view.append(h('h1', {}, 'Restore'));
  const [rps, ins] = await Promise.all([A.get(`${V()}/recovery-points`), A.get(`${V()}/instances`)]);
  const points = (rps.items || []).slice().reverse();
  const clusters = [...new Set((ins.items || []).map((i) => i.cluster))].sort();
  const pointSel = h('select', { id: 'rs-point', required: true }, points.map((p) => h('option', { value: p.id, selected: p.id === q.get('point') },
    `${p.id} — ${p.instance}, ${new Date(p.time).toISOString().slice(0, 16).replace('T', ' ')}`)));
  const pointOf = () => points.find((p) => p.id === pointSel.value);
  const clusterOf = (p) => ((ins.items || []).find((i) => p && i.name === p.instance) || {}).cluster || '';
  const target = h('input', { id: 'rs-target', list: 'rs-clusters', required: true, value: q.get('target') || clusterOf(pointOf()) });
  pointSel.addEventListener('change', () => { target.value = clusterOf(pointOf()); });
  const inc = h('input', { id: 'rs-include', placeholder: 'shop, web', value: q.get('include') || '' });
  const exc = h('input', { id: 'rs-exclude', placeholder: 'kube-system' });
  const types = h('input', { id: 'rs-types', placeholder: 'deployments, configmaps' });
  const selector = h('input', { id: 'rs-selector', placeholder: 'app=web' });
  const mapping = h('input', { id: 'rs-mapping', placeholder: 'shop=shop-restored', value: q.get('mapping') || '' });
  const radio = (name, value, label, checked) => {
    const id = `rs-${name}-${value}`;
    return h('span', {}, h('input', { type: 'radio', name, value, id, checked }), ' ', h('label', { for: id }, label), ' ');
  };
  const form = h('form', { id: 'restore-form' },
    h('ol', { class: 'steps', 'aria-label': 'Steps' }, h('li', { 'aria-current': 'step', id: 'step-1' }, '1 Point and target'), h('li', { id: 'step-2' }, '2 What and how'),
      h('li', { id: 'step-3' }, '3 Preview'), h('li', { id: 'step-4' }, '4 Start and follow')),
    h('fieldset', {}, h('legend', {}, '1. Recovery point and target cluster'), h('div', { class: 'grid' },
      field('Recovery point', pointSel), field('Target cluster', target, 'A cluster registered with arca trusted-access enable'))),
    h('datalist', { id: 'rs-clusters' }, clusters.map((c) => h('option', { value: c }))),
    h('fieldset', {}, h('legend', {}, '2. Filters, namespace mapping, conflicts and volumes'), h('div', { class: 'grid' },
      field('Namespaces to restore', inc, 'Comma-separated; empty: all in the point'),
      field('Namespaces to leave out', exc),
      field('Resource types', types, 'Comma-separated; empty: all'),
      field('Label selector', selector),
      field('Namespace mapping', mapping, 'old=new, comma-separated: restore namespace old as new'),
      h('div', {}, 'If an object exists'), h('div', { role: 'radiogroup', 'aria-label': 'If an object exists' },
        radio('conflict', 'Skip', 'skip it', true), radio('conflict', 'Patch', 'patch it', false)),
      h('div', {}, 'Volumes'), h('div', { role: 'radiogroup', 'aria-label': 'Volumes' },
        radio('volumes', 'RestoreWithVolumeData', 'with their data', true), radio('volumes', 'RestoreWithoutVolumeData', 'claims only, no data', false)),
      field('Volume data from', h('select', { id: 'rs-source' }, [['Auto', 'automatic: snapshot if it exists, else the vault tier'], ['Snapshot', 'the CSI snapshot'], ['Vault', 'the vault tier (repository)']].map(([v, l]) =>
        h('option', { value: v }, l)))))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'rs-preview' }, '3. Preview (dry run)'),
      h('button', { type: 'button', id: 'rs-start', disabled: true }, '4. Start the restore')));
  const out = h('div', { id: 'restore-preview' });
  if (!(await can('restores/action'))) {
    view.append(h('p', { class: 'notice warn', id: 'restore-not-allowed' }, 'Your roles at ', h('code', {}, `/vaults/${state.vault}`), ' do not include ',
      h('code', {}, 'restores/action'), ': the vault will refuse a preview or a restore.'));
  }
  view.append(form, out);

  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const body = (dryRun) => {
    const c = { conflictPolicy: form.querySelector('input[name=conflict]:checked').value, persistentVolumeRestoreMode: form.querySelector('input[name=volumes]:checked').value };
    const src = form.querySelector('#rs-source').value;
    if (src !== 'Auto' && c.persistentVolumeRestoreMode === 'RestoreWithVolumeData') c.volumeDataSource = src;
    if (list(inc.value).length) c.includedNamespaces = list(inc.value);
    if (list(exc.value).length) c.excludedNamespaces = list(exc.value);
    if (list(types.value).length) c.includedResourceTypes = list(types.value);
    if (selector.value.trim()) c.labelSelectors = [selector.value.trim()];
    const m = {};
    for (const pair of list(mapping.value)) {
      const [a, b] = pair.split('=').map((x) => (x || '').trim());
      if (!a || !b) throw new Error(`namespace mapping "${pair}" is not old=new`);
      m[a] = b;
    }
    if (Object.keys(m).length) c.namespaceMappings = m;
    if (dryRun) c.dryRun = true;
    return { recoveryPoint: pointSel.value, targetCluster: target.value.trim(), restoreCriteria: c };
  };
  const startBtn = form.querySelector('#rs-start');
  const step = (n) => { for (let i = 1; i <= 4; i++) { const li = form.querySelector(`#step-${i}`); if (i === n) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current'); } };
  for (const el of form.querySelectorAll('input, select')) el.addEventListener('change', () => { startBtn.disabled = true; step(el.closest('fieldset') && el.closest('fieldset').querySelector('legend').textContent.startsWith('1') ? 1 : 2); });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    startBtn.disabled = true;
    step(3);
    clear(out).append(h('p', { role: 'status' }, 'Running a dry run in the target cluster…'));
    let b;
    try { b = body(true); } catch (err) { clear(out).append(errorBox(err)); return; }
    try {
      const j = await A.post(`${V()}/restores`, b);
      const done = await follow(j.id, (cur) => { clear(out).append(h('p', { role: 'status' }, `Dry run ${cur.id}: `, badge(cur.state), ' ', jobProgressText(cur))); });
      clear(out).append(h('h2', {}, 'Preview'), previewOf(done));
      await diffPreview(out, b);
      if (done.state === 'Completed' || done.state === 'CompletedWithWarnings') { startBtn.disabled = false; startBtn.focus(); }
    } catch (err) { clear(out).append(errorBox(err, 'Preview')); step(2); }
  });
  startBtn.addEventListener('click', async () => {
    step(4);
    try {
      const j = await A.post(`${V()}/restores`, body(false));
      location.hash = `#/jobs/${A.enc(j.id)}`;
    } catch (err) { out.append(errorBox(err, 'Restore')); }
  });
}

async function follow(id, onupdate) {
  for (;;) {
    const j = await A.get(`${V()}/jobs/${A.enc(id)}`);
    onupdate(j);
    if (TERMINAL.includes(j.state)) return j;
    await new Promise((r) => setTimeout(r, 1500));
  }
}

function previewOf(j) {
  const counts = (j.progress && j.progress.counts) || {};
  return h('div', { id: 'preview-result' },
    h('p', {}, `Dry run ${j.id}: `, badge(j.state), '. Nothing was written; this is what the restore would do.'),
    table('What the restore would do', ['Action', { label: 'Objects', num: true }], Object.entries(counts).sort().map(([k, v]) => ({ cells: [k, String(v)] })), { id: 'preview-counts', empty: 'No objects.' }),
    j.errors && j.errors.length ? issuesTable('Errors', j.errors) : null,
    j.warnings && j.warnings.length ? h('div', {}, h('h3', {}, 'Warnings'), issuesTable('Warnings', j.warnings)) : null);
}

// diffPreview shows the point against the live target cluster, when the
// vault serves diffs.
async function diffPreview(out, b) {
  try {
    const q = new URLSearchParams({ live: 'true' });
    const ns = b.restoreCriteria.includedNamespaces || [];
    if (ns.length === 1) q.set('namespace', ns[0]);
    const d = await A.get(`${V()}/recovery-points/${A.enc(b.recoveryPoint)}/diff?${q}`);
    out.append(h('h3', {}, 'The point against its live cluster'),
      h('p', { class: 'muted' }, 'What differs between the point and what runs now in the instance’s cluster, before any namespace mapping.'),
      h('div', { id: 'preview-diff' }, diffTable(d)));
  } catch (e) {
    if (e instanceof A.APIError && (e.code === 'RouteNotFound' || e.code === 'MethodNotAllowed')) {
      out.append(h('p', { class: 'muted' }, 'A diff against the live cluster is not served by this vault yet.'));
    } else out.append(errorBox(e, 'Diff'));
  }
}

// ---- policies ----

async function pagePolicies(view) {
  view.append(h('h1', {}, 'Policies'));
  const [pols, ins, mayWrite] = await Promise.all([A.get(`${V()}/policies`), A.get(`${V()}/instances`), can('policies/write')]);
  if (mayWrite) view.append(h('p', {}, link('#/policies/+new', 'New policy', { class: 'button primary', id: 'new-policy' })));
  view.append(table('Policies', ['Policy', 'Schedule', 'Retention', 'Used by'], (pols.items || []).map((p) => ({
    cells: [link(`#/policies/${A.enc(p.name)}`, p.name), h('code', {}, p.schedule),
      Object.entries(p.retention || {}).map(([k, r]) => `${k} ${r.duration}${r.datastore === 'vault' ? ' (vault)' : ''}`).join(', ') +
        (p.verify ? `; verified ${p.verify}` : '') + (p.copyTo ? `; copied to ${p.copyTo}` : ''),
      (ins.items || []).filter((i) => i.policy === p.name).map((i) => i.name).join(', ') || 'none'],
  }))));
}

async function pagePolicy(view, _q, name) {
  const isNew = name === '+new';
  const pol = isNew ? { name: '', schedule: 'R/2026-01-01T02:00:00Z/P1D', retention: { default: { duration: 'P7D' } } } : await A.get(`${V()}/policies/${A.enc(name)}`);
  const mayWrite = await can('policies/write', isNew ? `/vaults/${state.vault}` : `/vaults/${state.vault}/policies/${name}`);
  view.append(h('h1', {}, isNew ? 'New policy' : `Policy ${name}`));
  const nameIn = h('input', { id: 'pol-name', value: pol.name, required: true, readonly: !isNew, pattern: '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?' });
  const sched = h('input', { id: 'pol-schedule', value: pol.schedule, required: true, size: 34 });
  const rules = ['default', 'daily', 'weekly', 'monthly', 'yearly'];
  const durs = {}; const stores = {};
  let etag = pol.__etag;
  const verify = h('select', { id: 'pol-verify' }, [['', 'never'], ['daily', 'daily'], ['weekly', 'weekly'], ['monthly', 'monthly']].map(([v, l]) =>
    h('option', { value: v, selected: (pol.verify || '') === v }, l)));
  const copyTo = h('input', { id: 'pol-copy-to', value: pol.copyTo || '', size: 34, placeholder: 'none' });
  const form = h('form', { id: 'policy-form' }, h('div', { class: 'grid' },
    field('Name', nameIn, isNew ? 'Lowercase letters, digits and dashes' : 'Names cannot change'),
    field('Schedule', sched, 'R/<start>/PT1H…PT24H or P1D, or 5-field cron in UTC'),
    field('Verify the latest point', verify, 'A Verification job in the instance’s cluster once per period'),
    field('Copy vault-tier points to', copyTo, 'A second storage location URL (needs Storage Contributor there)'),
    rules.map((r) => {
      durs[r] = h('input', { id: `pol-${r}`, value: (pol.retention[r] || {}).duration || '', placeholder: r === 'default' ? 'P7D' : 'not kept', required: r === 'default', size: 8 });
      stores[r] = h('select', { id: `pol-${r}-store`, 'aria-label': `${r} datastore`, disabled: r === 'default' },
        ['operational', 'vault'].map((s) => h('option', { value: s, selected: ((pol.retention[r] || {}).datastore || 'operational') === s }, s)));
      return [h('label', { for: durs[r].id }, `Keep ${r === 'default' ? 'every backup' : `first of the ${{ daily: 'day', weekly: 'week', monthly: 'month', yearly: 'year' }[r]}`}`),
        h('div', {}, durs[r], ' in ', stores[r])];
    })),
  mayWrite ? h('button', { class: 'primary', type: 'submit', id: 'pol-save' }, isNew ? 'Create policy' : 'Save') : h('p', { class: 'muted' }, 'Your roles do not allow changing policies here (policies/write).'));
  if (!mayWrite) for (const el of form.querySelectorAll('input, select')) el.disabled = true;
  const out = h('div');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(out);
    const retention = {};
    for (const r of rules) {
      if (!durs[r].value.trim()) continue;
      retention[r] = { duration: durs[r].value.trim() };
      if (stores[r].value === 'vault') retention[r].datastore = 'vault';
    }
    // Every field of the policy is sent: an update replaces the policy.
    const spec = { schedule: sched.value.trim(), retention };
    if (verify.value) spec.verify = verify.value;
    if (copyTo.value.trim()) spec.copyTo = copyTo.value.trim();
    try {
      if (isNew) {
        await A.post(`${V()}/policies`, { name: nameIn.value.trim(), ...spec });
        location.hash = `#/policies/${A.enc(nameIn.value.trim())}`;
      } else {
        const upd = await A.api('PUT', `${V()}/policies/${A.enc(name)}`, spec, { ifMatch: etag });
        etag = upd.__etag || etag; // the next save is against this version
        out.append(h('p', { class: 'notice ok', role: 'status' }, 'Saved.'));
      }
    } catch (err) { out.append(errorBox(err, 'Saving the policy')); }
  });
  view.append(form, out);
}

// ---- access: roles, assignments, audit ----

async function pageAccess(view) {
  view.append(h('h1', {}, 'Access'));
  const scope = `/vaults/${state.vault}`;
  const [roles, mine, mayRead, mayWrite, mayAudit] = await Promise.all([A.get('/api/v1/roles'), A.get(`/api/v1/permissions?scope=${A.enc(scope)}`),
    can('roleAssignments/read', scope), can('roleAssignments/write', scope), can('roleAssignments/read', '/')]);
  view.append(h('h2', {}, 'Your access'), h('p', {}, `As ${state.principal} at ${scope} you may: `, h('span', { id: 'my-actions' }, (mine.actions || []).join(', ') || 'nothing')));
  const q = mayRead ? `scope=${A.enc(scope)}` : `scope=${A.enc(scope)}&principal=${A.enc(state.principal)}`;
  const ras = await A.get(`/api/v1/role-assignments?${q}`);
  const out = h('div');
  view.append(h('h2', {}, mayRead ? 'Role assignments at this vault and above' : 'Your role assignments'),
    table('Role assignments', ['Principal', 'Role', 'Scope', 'By', 'Since', ''], (ras.items || []).map((a) => ({
      cells: [a.principal, a.role, h('code', {}, a.scope), a.createdBy || '', time(a.createdAt),
        mayWrite ? h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${a.role} of ${a.principal} at ${a.scope}`, onclick: async () => {
          if (!confirm(`Remove ${a.role} of ${a.principal} at ${a.scope}?`)) return;
          try { await A.api('DELETE', `/api/v1/role-assignments/${A.enc(a.id)}`); route(); } catch (e) { out.append(errorBox(e, 'Removing the assignment')); }
        } }, 'Remove') : ''],
    }))), out);
  if (mayWrite) {
    const who = h('input', { id: 'ra-principal', required: true, placeholder: 'user:alice' });
    const role = h('select', { id: 'ra-role' }, (roles.items || []).map((r) => h('option', { value: r.name }, r.name)));
    const sc = h('input', { id: 'ra-scope', required: true, value: scope });
    const form = h('form', { id: 'assign-form' }, h('h2', {}, 'Assign a role'), h('div', { class: 'grid' },
      field('Principal', who, 'user:NAME, group:NAME, or a token principal'), field('Role', role), field('Scope', sc, '/, /vaults/V, /vaults/V/instances/I, /clusters/C, …')),
    h('button', { type: 'submit', class: 'primary' }, 'Assign'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try { await A.post('/api/v1/role-assignments', { principal: who.value.trim(), role: role.value, scope: sc.value.trim() }); route(); } catch (err) { out.append(errorBox(err, 'Assigning the role')); }
    });
    view.append(form);
  }
  view.append(h('h2', {}, 'Built-in roles'), table('Roles', ['Role', 'What it may do', 'Actions'], (roles.items || []).map((r) => ({
    cells: [r.name, r.description, h('details', {}, h('summary', {}, `${r.actions.length} actions`), r.actions.join(', '))],
  }))));
  view.append(h('h2', {}, 'Audit log'));
  if (!mayAudit) {
    view.append(h('p', { class: 'muted', id: 'audit-hidden' }, 'Reading the audit log needs roleAssignments/read at /, which your roles do not grant.'));
    return;
  }
  try {
    const au = await A.get('/api/v1/audit?limit=200');
    view.append(table('Audit log', ['Time', 'Event', 'Principal', 'Request', 'Status', 'Code', 'Action and scope'], (au.items || []).map((e) => ({
      cells: [time(e.time), e.event, e.principal, `${e.method} ${e.path}`, String(e.status), codeLink(e.code), e.action ? `${e.action} at ${e.scope}` : ''],
    })), { id: 'audit-table' }), h('p', { class: 'muted' }, au.note || ''));
  } catch (e) {
    if (e instanceof A.APIError && e.code === 'RouteNotFound') view.append(h('p', { class: 'muted' }, 'This vault does not serve its audit log; it is in the vault’s log (audit lines).'));
    else view.append(errorBox(e, 'Audit log'));
  }
}

// ---- charts ----

function instanceCharts(name, jobs, points) {
  const done = jobs.filter((j) => isBackup(j) && j.startedAt && j.endedAt && (j.state === 'Completed' || j.state === 'CompletedWithWarnings'));
  return [
    lineChart(`dur-${name}`, `Backup duration of ${name}`, [{ name: 'duration', points: done.map((j) => ({ t: new Date(j.startedAt), v: (new Date(j.endedAt) - new Date(j.startedAt)) / 1000 })) }], (v) => (v < 60 ? `${Number(v.toFixed(1))}s` : duration(v))),
    lineChart(`size-${name}`, `Backup size of ${name}`, [{ name: 'data', points: points.map((p) => ({ t: new Date(p.time), v: p.bytes })) }], bytes),
  ];
}

async function pageCharts(view) {
  view.append(h('h1', {}, 'Charts'));
  const d = await vaultData();
  // Repository growth: the data of the points kept, after each point.
  const pts = d.points.slice().sort((a, b) => a.time.localeCompare(b.time));
  let acc = 0;
  view.append(lineChart('growth', 'Data in recovery points over time (all instances)', [{ name: 'data kept', points: pts.map((p) => ({ t: new Date(p.time), v: (acc += p.bytes) })) }], bytes));
  // Job outcomes per day, last 14 days.
  const days = [];
  const today = new Date(); today.setUTCHours(0, 0, 0, 0);
  for (let i = 13; i >= 0; i--) days.push({ label: new Date(today - i * DAY).toISOString().slice(0, 10), values: {} });
  for (const j of d.jobs) {
    if (!TERMINAL.includes(j.state) || !j.endedAt) continue;
    const day = days.find((x) => x.label === j.endedAt.slice(0, 10));
    if (day) day.values[j.state] = (day.values[j.state] || 0) + 1;
  }
  view.append(barChart('outcomes', 'Job outcomes per day (last 14 days)', days, [
    { key: 'Completed', color: '#116329' }, { key: 'CompletedWithWarnings', color: '#bf8700' }, { key: 'Failed', color: '#a40e26' }, { key: 'Cancelled', color: '#57606a' }]));
  for (const i of d.instances) {
    view.append(h('h2', {}, `Instance ${i.name}`), ...instanceCharts(i.name, d.jobs.filter((j) => j.instance === i.name), d.points.filter((p) => p.instance === i.name)));
  }
}

// ---- a code's entry in the user guide ----

let guide = null;
async function pageCode(view, _q, code) {
  view.append(h('h1', {}, `Code ${code}`));
  if (!guide) {
    const res = await fetch('/ui/user-guide.md', { credentials: 'same-origin' });
    guide = await res.text();
  }
  const lines = guide.split('\n');
  let section = '';
  const hits = [];
  for (const l of lines) {
    if (/^#{2,4} /.test(l)) section = l.replace(/^#+ /, '');
    if (l.startsWith('|') && l.includes(`\`${code}\``)) {
      const cells = l.split('|').slice(1, -1).map((c) => c.trim().replace(/`/g, ''));
      hits.push({ section, cells });
    }
  }
  if (!hits.length) {
    view.append(h('p', {}, `The user guide has no table entry for ${code}. Search docs/user-guide.md, section “Troubleshooting by code”.`));
    return;
  }
  for (const hit of hits) {
    view.append(h('section', { class: 'card code-entry' }, h('h2', {}, hit.section),
      h('dl', {}, h('dt', {}, 'Code'), h('dd', {}, h('code', {}, hit.cells[0])),
        hit.cells[1] ? [h('dt', {}, 'Meaning'), h('dd', {}, hit.cells[1])] : null,
        hit.cells[2] ? [h('dt', {}, 'Fix'), h('dd', {}, hit.cells.slice(2).join(' — '))] : null)));
  }
  view.append(h('p', {}, 'From docs/user-guide.md, “Troubleshooting by code”. ', h('a', { href: '#/', onclick: (e) => { e.preventDefault(); history.back(); } }, 'Back')));
}

// ---- approvals (multi-user authorization) ----

async function pageApprovals(view, q) {
  view.append(h('h1', {}, 'Approval requests'));
  const [list, mayApprove] = await Promise.all([
    A.get(`${V()}/approvals${q.get('state') ? `?state=${A.enc(q.get('state'))}` : ''}`), can('approvals/approve/action')]);
  const out = h('div');
  const decide = async (a, verb) => {
    const reason = prompt(`Reason to ${verb} ${a.operation} of ${a.target} (optional)`) || '';
    clear(out);
    try { await A.post(`${V()}/approvals/${A.enc(a.id)}/${verb}`, reason ? { reason } : {}); route(); } catch (e) { out.append(errorBox(e, verb === 'approve' ? 'Approve' : 'Reject')); }
  };
  view.append(h('p', {}, 'With the vault’s resource guard on, destructive operations need a second person’s approval (the Resource Guard Approver role); the requester repeats the operation once approved.'),
    out, table('Approval requests', ['Request', 'Operation', 'Target', 'Requested by', 'State', 'Expires', 'Decided by', ''], (list.items || []).map((a) => ({
      cells: [a.id, a.operation, a.target, a.requester, badge(a.state), time(a.expiresAt), a.approver ? `${a.approver}${a.reason ? `: ${a.reason}` : ''}` : '',
        mayApprove && a.state === 'Pending' && a.requester !== state.principal ? h('span', {},
          h('button', { type: 'button', class: 'primary', onclick: () => decide(a, 'approve') }, 'Approve'), ' ',
          h('button', { type: 'button', class: 'danger', onclick: () => decide(a, 'reject') }, 'Reject')) : ''],
    })), { empty: 'No requests.' }));
}
