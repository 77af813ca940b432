// novita-gpu dashboard: the instance table, live from the event stream, a create form and actions, and
// the volumes (Novita network storages) with the instances that mount them; for admin keys, the team's
// quotas and keys, and the audit trail. Warm pools: members by state, hit rates and idle cost, a claim for
// members, making and deleting pools for admins; a claimed instance can be returned to its pool.
// Every value from the API is written with textContent (never innerHTML), and the API key, when the
// service asks for one, lives in this tab's sessionStorage and travels in a header only (the event
// stream too: it is read with fetch(), which can send one, not EventSource, which cannot).
// What the key's role may not do is not shown (GET /api/me says the role); the server refuses it anyway.
'use strict';

const KEY_STORAGE = 'novita-gpu.api-key';
const PRODUCT_STORAGE = 'novita-gpu.product';  // the GPU last picked (not secret: localStorage)
const LIVE = new Set(['starting', 'running', 'health_checking', 'ready']);
const CAN_STOP = new Set(['creating', 'recovering', 'starting', 'running', 'health_checking', 'ready', 'failed']);
const CAN_START = new Set(['stopped', 'failed']);
const GONE = new Set(['terminating', 'terminated']);
const VOLUME_PENDING = new Set(['creating', 'deleting']);  // the volume worker finishes these in seconds
const ROLES = ['viewer', 'member', 'admin', 'owner'];
const AUDIT_PAGE = 50;
const REASONS = {
  USER: 'by request', AUTO_STOP: 'stopped when idle', NO_CAPACITY: 'no capacity in any region',
  STARTUP_TIMEOUT: 'did not start in time', HEALTH_CHECK_TIMEOUT: 'ports never answered',
  SPOT_RECLAIMED: 'spot instance reclaimed', RECOVERY_FAILED: 'spot recovery failed', UPSTREAM_ERROR: 'Novita error',
  POOL: 'by its warm pool',
};
// An instance's place in its warm pool (the view's pool.state).
const POOL_STATES = { ready: 'idle · ready', stopped: 'idle · stopped', claimed: 'claimed' };
const CLAIM_SOURCES = ['ready', 'stopped', 'warming', 'cold'];

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  instances: new Map(),
  loaded: false,  // the first full list has arrived: only then is an empty table "no instances"
  loadError: null,
  lastEventId: null,
  historyOf: null,
  volumes: new Map(),
  volumesLoaded: false,
  volumesError: null,
  volumesAt: 0,  // when the volumes were last read (Date.now())
  volumesShown: null,  // what the volume table shows, to redraw it only when that changes
  stream: null,
  timers: [],
  me: null,  // GET /api/me: {team, teamName, keyId, keyName, role}; null from a service without it
  started: false,  // the app is shown with a key the service took (a 401 now means it was revoked)
  everStarted: false,
  teams: [],  // owner keys: every team (GET /api/teams), for the team pickers
  teamShown: null,  // the id of the team the Team panel shows
  team: null,
  keys: [],
  audit: { events: [], cursor: null, pages: 0, missing: false, error: null },
  pools: [],
  poolsLoaded: false,
  poolsError: null,
  poolsAt: 0,  // when the pools were last read (Date.now())
  poolsShown: null,  // what the pool table shows, to redraw it only when that changes
  claiming: null,  // the pool the claim dialog is for
};

const $ = (id) => document.getElementById(id);

function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
  if (options.title) node.title = String(options.title);
  for (const [name, value] of Object.entries(options.data || {})) node.dataset[name] = value;
  for (const child of children) if (child) node.append(child);
  return node;
}

function headers(extra = {}) {
  const result = { Accept: 'application/json', ...extra };
  if (state.key) result.Authorization = `Bearer ${state.key}`;
  return result;
}

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The service answered ${status}.`);
    this.status = status;
    this.code = error.code || `HTTP_${status}`;
    this.details = error.details || [];
  }
}

async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401 && state.started) askKey('The service refused this key: it was revoked, or it expired.');
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// What the key's role may do: viewer < member < admin < owner. A service without /api/me (older than
// roles) lets every key act, as it did.
const rank = (role) => ROLES.indexOf(role);
const may = (role) => !state.me || rank(state.me.role) >= rank(role);
const isAdmin = () => Boolean(state.me) && rank(state.me.role) >= rank('admin');
const isOwner = () => Boolean(state.me) && state.me.role === 'owner';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- formatting -------------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds < 0) seconds = 0;
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

const money = (value, digits = 2) => (value === null || value === undefined ? '—' : `$${Number(value).toFixed(digits)}`);
const secondsSince = (iso) => (Date.now() - Date.parse(iso)) / 1000;
const stamp = (iso) => (iso || '').replace('T', ' ').replace(/\.\d+Z$|Z$/, '');  // an ISO time, to the second

function uptime(view) {
  if (!LIVE.has(view.status)) return '—';
  const since = view.startedAt || view.createdAt;
  return since ? duration(secondsSince(since)) : '—';
}

function autoStop(view) {
  const auto = view.autoStop || {};
  if (GONE.has(view.status) || view.status === 'stopped') return '—';
  if (auto.idleMinutes === 0) return 'never';
  if (!auto.stopsAt) return `${auto.idleMinutes} min idle`;
  const left = -secondsSince(auto.stopsAt);
  return left > 0 ? `in ${duration(left)}` : 'due now';
}

function errorText(error) {
  if (!(error instanceof ApiError)) return `The service cannot be reached (${error.message}).`;
  const details = error.details.map((d) => `${d.field}: ${d.message}`).join('; ');
  return details ? `${error.message} ${details}` : error.message;
}

function monthEnd(iso) {
  const at = new Date(iso);
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 0))
    .toLocaleDateString('en', { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

function copyByCommand(text, returnTo) {
  // Plain http on another host has no navigator.clipboard: the old way, through a hidden text area.
  const area = el('textarea', { className: 'offscreen', text });
  area.readOnly = true;
  document.body.append(area);
  area.select();
  let done = false;
  try { done = document.execCommand('copy'); } catch (_) { done = false; }
  area.remove();
  returnTo.focus();
  return done;
}

async function copy(text, node, label = text) {
  let done = false;
  try {
    await navigator.clipboard.writeText(text);
    done = true;
  } catch (_) {
    done = copyByCommand(text, node);
  }
  toast(done ? `Copied ${label}` : `${label} could not be copied: this browser refuses.`, done ? 'info' : 'error');
}

function toast(message, kind = 'error') {
  const node = $('toast');
  node.textContent = message;
  node.className = `toast ${kind}`;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 6000);
}

// -- the instance table -----------------------------------------------------------------------------

function actionButton(label, className, handler) {
  const button = el('button', { className, text: label });
  button.type = 'button';
  button.addEventListener('click', async () => {
    button.disabled = true;
    try { await handler(); } catch (error) { toast(errorText(error)); } finally { button.disabled = false; }
  });
  return button;
}

function idButton(instanceId) {
  // One line, cut with an ellipsis when narrow; the whole id in the tooltip and copied on click.
  const button = el('button', { className: 'id', text: instanceId, title: instanceId });
  button.type = 'button';
  button.setAttribute('aria-label', `Copy the id ${instanceId}`);
  button.addEventListener('click', () => copy(instanceId, button));
  return button;
}

function costCell(view) {
  const cost = view.cost || {};
  const cell = el('td', { className: 'num cost', text: money(cost.accruedUsd, 2) });
  if (cost.accruedAt) {
    const at = cost.accruedAt.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');
    cell.title = `$${Number(cost.accruedUsd).toFixed(4)} for ${duration(cost.billedSeconds || 0)} billed, as of ${at}` +
      (cost.billingSince ? ' (still billing)' : '');
  }
  return cell;
}

function row(view) {
  const name = el('td', { className: 'name' },
    el('div', { className: 'iname strong', text: view.name, title: view.name }),
    idButton(view.instanceId));
  const labels = Object.entries(view.labels || {});
  if (labels.length) {
    const chips = el('div', { className: 'chips' });
    for (const [key, value] of labels) chips.append(el('span', { className: 'chip', text: `${key}=${value}`, title: `${key}=${value}` }));
    name.append(chips);
  }
  const status = el('td', {},
    el('span', { className: `badge st-${view.status}`, text: view.status.replace('_', ' '), data: { status: view.status } }),
    el('div', { className: 'muted small message', text: [view.statusMessage, REASONS[view.statusReason] || view.statusReason].filter(Boolean).join(' · ') }),
    recoveryLine(view),
    poolBadge(view));
  const actions = el('td', { className: 'actions' });
  const acts = may('member');  // a viewer reads: its rows have History only
  const claimed = view.pool && view.pool.state === 'claimed';
  const idleMember = view.pool && !claimed;  // the pool's to start and stop: a claim hands it out
  if (acts && !idleMember && CAN_START.has(view.status)) actions.append(actionButton('Start', 'small', () => act(view, 'start')));
  if (acts && !idleMember && CAN_STOP.has(view.status)) actions.append(actionButton('Stop', 'small', () => act(view, 'stop')));
  if (acts && claimed && CAN_STOP.has(view.status)) actions.append(actionButton('Return to pool', 'small', () => giveBack(view)));
  actions.append(actionButton('History', 'small ghost', () => openHistory(view.instanceId)));
  if (acts && !GONE.has(view.status)) actions.append(actionButton('Delete', 'small danger-ghost', () => remove(view)));
  const tr = el('tr', { data: { id: view.instanceId } },
    name,
    status,
    el('td', {},
      el('div', { className: 'product', text: view.gpuNum > 1 ? `${view.gpuNum}× ${view.productName}` : view.productName }),
      el('div', { className: 'region muted small', text: view.region || '—' }),
      ...mounts(view)),
    el('td', { className: 'num', text: money(view.pricePerHour, 2) }),
    costCell(view),
    el('td', { className: 'uptime col-uptime', text: uptime(view) }),
    el('td', { className: 'autostop', text: autoStop(view) }),
    actions);
  if (GONE.has(view.status)) tr.classList.add('gone');
  return tr;
}

function poolBadge(view) {
  // The warm pool an instance belongs to: its name and whether the pool keeps it idle or handed it out.
  const pool = view.pool;
  if (!pool) return null;
  return el('div', { className: `pool-badge small pool-${pool.state}` },
    el('span', { className: 'chip', text: `${pool.name || pool.poolId} · ${POOL_STATES[pool.state] || pool.state}`,
      title: pool.state === 'claimed'
        ? `Claimed from warm pool ${pool.name}: "Return to pool" gives it back (a stopped member, or deleted if the pool is full)`
        : `An idle member warm pool ${pool.name} keeps ${pool.state}: a claim hands it out` }));
}

// -- spot recovery (the view's `recovery`) ----------------------------------------------------------

function recoveryPolicy(recovery) {
  if (recovery.onReclaim === 'stop') return 'On reclaim: stays stopped';
  const parts = [
    `On reclaim: ${recovery.onReclaim === 'migrate' ? 'migrate (else recreate)' : recovery.onReclaim}`,
    `at most ${recovery.maxRecoveries} per 24 h`,
  ];
  if (recovery.fallbackToOnDemand) parts.push('on-demand when spot is sold out');
  if (recovery.keepReclaimed) parts.push('reclaimed instances kept');
  return parts.join(' · ');
}

function recoveryLine(view) {
  // Under the status of an instance that is or was recovered: the attempt under way, or the last one.
  const recovery = view.recovery;
  const steps = (recovery && recovery.history) || [];
  if (!recovery || (!recovery.inProgress && !steps.length)) return null;
  const last = steps[steps.length - 1] || {};
  const text = recovery.inProgress
    ? `recovery ${recovery.attempt}/${recovery.maxRecoveries} · ${recovery.path}${recovery.onDemand ? ' · on-demand' : ''} · in progress`
    : `recovery ${last.attempt} · ${last.path} · ${last.outcome.replace('_', ' ')}`;
  const title = [recoveryPolicy(recovery), ...steps.map((s) => `#${s.attempt} ${stamp(s.at)} ${s.path}: ${s.outcome}${s.message ? ` (${s.message})` : ''}`)];
  return el('div', {
    className: `recovery small ${recovery.inProgress ? 'in_progress' : last.outcome}`, text, title: title.join('\n'),
  });
}

function showRecovery(view) {
  // The history panel's recovery block: shown for spot instances, and for any that was ever recovered.
  const recovery = view && view.recovery;
  const steps = (recovery && recovery.history) || [];
  $('history-recovery').hidden = !recovery || (view.billingMode !== 'spot' && !steps.length && !recovery.inProgress);
  if ($('history-recovery').hidden) return;
  const now = recovery.inProgress
    ? ` · recovering now: attempt ${recovery.attempt} (${recovery.path}) since ${stamp(recovery.startedAt)}${recovery.onDemand ? ', on-demand' : ''}`
    : '';
  $('recovery-policy').textContent = recoveryPolicy(recovery) + now;
  $('recovery-kept').textContent = (recovery.keptInstanceIds || []).length ? `Reclaimed instances kept: ${recovery.keptInstanceIds.join(', ')}` : '';
  $('recovery-steps').hidden = !steps.length;
  $('recovery-rows').replaceChildren(...steps.slice().reverse().map((s) => el('tr', {},
    el('td', { className: 'num', text: s.attempt }),
    el('td', { className: 'mono small at', text: stamp(s.at) }),
    el('td', { text: s.path }),
    el('td', { className: 'mono small', text: s.upstreamId || '—' }),
    el('td', {}, el('span', { className: `chip outcome-${s.outcome}`, text: s.outcome.replace('_', ' ') })),
    el('td', { className: 'small', text: s.message || '' }))));
}

function mounts(view) {
  // The volumes the instance mounts, one line each: name → mount point.
  return (view.volumes || []).map((v) => el('div', {
    className: 'mount small', text: `${v.name} → ${v.mountPoint}`, title: `Volume ${v.name} (${v.volumeId}) at ${v.mountPoint}`,
  }));
}

function rowButton(instanceId, ...labels) {
  const tr = [...$('rows').children].find((node) => node.dataset.id === instanceId);
  if (!tr) return null;
  for (const label of labels) {
    const found = [...tr.querySelectorAll('button')].find((b) => b.textContent === label);
    if (found) return found;
  }
  return null;
}

function focusRow(instanceId, ...labels) {
  const button = rowButton(instanceId, ...labels);
  if (button) button.focus();
}

function emptyText(hidden) {
  if (!state.loaded) return state.loadError ? `Instances could not be loaded: ${state.loadError} Retrying…` : 'Loading instances…';
  if (hidden) return `No live instances (${hidden} terminated: tick "show terminated" to see ${hidden === 1 ? 'it' : 'them'}).`;
  return may('member') ? 'No instances yet. Create one below.' : 'No instances yet.';
}

function render() {
  const showGone = $('show-terminated').checked;
  const all = [...state.instances.values()];
  const views = all
    .filter((v) => showGone || v.status !== 'terminated')
    .sort((a, b) => (b.createdAt || '').localeCompare(a.createdAt || ''));
  // The rows are rebuilt: a button that had the focus gets it back in its new row.
  const active = document.activeElement;
  const focused = active && active.tagName === 'BUTTON' && $('rows').contains(active)
    ? { id: active.closest('tr').dataset.id, label: active.textContent } : null;
  $('rows').replaceChildren(...views.map(row));
  if (focused) focusRow(focused.id, focused.label);
  const empty = $('empty');
  empty.textContent = emptyText(all.length - views.length);
  empty.classList.toggle('loading', !state.loaded);
  empty.hidden = state.loaded && views.length > 0;
  const live = [...state.instances.values()].filter((v) => LIVE.has(v.status));
  $('stat-running').textContent = String(live.length);
  const spend = live.reduce((sum, v) => sum + (v.pricePerHour || 0), 0);
  $('stat-spend').textContent = `${money(spend)}/h`;
}

function tick() {
  for (const tr of $('rows').children) {
    const view = state.instances.get(tr.dataset.id);
    if (!view) continue;
    tr.querySelector('.uptime').textContent = uptime(view);
    tr.querySelector('.autostop').textContent = autoStop(view);
  }
}

async function loadInstances() {
  const found = new Map();
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: '100' });
    if (cursor) query.set('cursor', cursor);
    const page = await api('GET', `/api/instances?${query}`);
    for (const view of page.instances) found.set(view.instanceId, view);
    cursor = page.nextCursor;
  } while (cursor);
  state.instances = found;
  state.loaded = true;
  state.loadError = null;
  render();
}

function loadInstancesShowingErrors() {
  return loadInstances().catch((error) => {
    if (state.loaded) return;
    state.loadError = errorText(error);
    render();
  });
}

const refreshing = new Map();
function refresh(instanceId) {
  // One GET per instance at a time: a burst of events for it ends in one fresh view.
  if (refreshing.has(instanceId)) { refreshing.set(instanceId, true); return; }
  refreshing.set(instanceId, false);
  (async () => {
    try {
      do {
        refreshing.set(instanceId, false);
        const view = await api('GET', `/api/instances/${encodeURIComponent(instanceId)}`);
        state.instances.set(instanceId, view);
        render();
        if (state.historyOf === instanceId) showRecovery(view);
      } while (refreshing.get(instanceId));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) toast(errorText(error));
    } finally {
      refreshing.delete(instanceId);
    }
  })();
}

// -- the volume table -------------------------------------------------------------------------------

function volumeRow(view) {
  const users = el('td', { className: 'mounted-by small' });
  for (const m of view.mountedBy || []) {
    users.append(el('div', { className: 'mount', text: `${m.name} → ${m.mountPoint}`, title: `${m.name} (${m.instanceId}) mounts it at ${m.mountPoint}` }));
  }
  if (!users.childNodes.length) users.textContent = '—';
  const price = el('td', { className: 'num', text: money(view.pricePerGbMonth, 4) });
  if (view.pricePerHour !== null && view.pricePerHour !== undefined) price.title = `${money(view.pricePerHour, 4)}/h for its ${view.sizeGb} GB`;
  const tr = el('tr', { data: { id: view.volumeId } },
    el('td', { className: 'name' },
      el('div', { className: 'iname strong', text: view.name, title: view.name }),
      idButton(view.volumeId)),
    el('td', {},
      el('span', { className: `badge st-${view.status}`, text: view.status, data: { status: view.status } }),
      el('div', { className: 'muted small message', text: view.statusMessage || '' })),
    el('td', { className: 'region', text: view.region || '—' }),
    el('td', { className: 'num size', text: `${view.sizeGb} GB` }),
    price,
    users);
  if (view.status === 'deleted') tr.classList.add('gone');
  return tr;
}

function volumesEmptyText(hidden) {
  if (!state.volumesLoaded) return state.volumesError ? `Volumes could not be loaded: ${state.volumesError} Retrying…` : 'Loading volumes…';
  if (hidden) return `No live volumes (${hidden} deleted: tick "show deleted" to see ${hidden === 1 ? 'it' : 'them'}).`;
  return 'No volumes yet: novita-gpu volumes create NAME --region REGION --size GB makes one.';
}

function renderVolumes() {
  const showDeleted = $('show-deleted').checked;
  const all = [...state.volumes.values()];
  const views = all
    .filter((v) => showDeleted || v.status !== 'deleted')
    .sort((a, b) => (b.createdAt || '').localeCompare(a.createdAt || ''));
  const shown = JSON.stringify(views);
  if (shown !== state.volumesShown) {  // a reload that changed nothing leaves the rows (and the focus) alone
    state.volumesShown = shown;
    $('volume-rows').replaceChildren(...views.map(volumeRow));
  }
  const empty = $('volumes-empty');
  empty.textContent = volumesEmptyText(all.length - views.length);
  empty.classList.toggle('loading', !state.volumesLoaded);
  empty.hidden = state.volumesLoaded && views.length > 0;
}

async function loadVolumes() {
  const found = new Map();
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: '100' });
    if (cursor) query.set('cursor', cursor);
    const page = await api('GET', `/api/volumes?${query}`);
    for (const view of page.volumes) found.set(view.volumeId, view);
    cursor = page.nextCursor;
  } while (cursor);
  state.volumes = found;
  state.volumesLoaded = true;
  state.volumesError = null;
  renderVolumes();
}

function loadVolumesShowingErrors() {
  if (loadVolumesShowingErrors.busy) return loadVolumesShowingErrors.busy;
  state.volumesAt = Date.now();
  loadVolumesShowingErrors.busy = loadVolumes().catch((error) => {
    if (state.volumesLoaded) return;
    state.volumesError = errorText(error);
    renderVolumes();
  }).finally(() => { loadVolumesShowingErrors.busy = null; });
  return loadVolumesShowingErrors.busy;
}

function volumesDue() {
  // Volumes send no events: read again every 2 s while one is being created or deleted (the worker is
  // done within seconds), else every 10 s (one small query), and after instance events (volumesSoon).
  const pending = [...state.volumes.values()].some((v) => VOLUME_PENDING.has(v.status));
  if (!state.volumesLoaded || pending || Date.now() - state.volumesAt >= 10000) loadVolumesShowingErrors();
}

function volumesSoon() {
  // An instance created, stopped or deleted changes what mounts a volume: one read after a burst of events.
  clearTimeout(volumesSoon.timer);
  volumesSoon.timer = setTimeout(() => loadVolumesShowingErrors(), 1000);
}

async function loadStats() {
  try {
    const stats = await api('GET', '/api/instances/auto-stop/stats');
    $('stat-stopped').textContent = String(stats.stoppedSoFar ?? 0);
    $('stat-saved').textContent = money(stats.dollarsSaved ?? 0);
  } catch (_) { /* the figures stay as they were */ }
}

// This month's spend (GET /api/costs) and the budget (GET /api/budget: a null limit, or 404, is none).
async function loadSpend() {
  const [costs, budget] = await Promise.all([
    api('GET', '/api/costs').catch(() => null),
    api('GET', '/api/budget').catch(() => null),
  ]);
  if (costs) {
    $('stat-month').textContent = money(costs.totalUsd);
    $('stat-month').title = `$${Number(costs.totalUsd).toFixed(4)} billed from ${costs.from.slice(0, 10)} to now (UTC)`;
    const hours = Number(costs.gpuHours || 0);
    $('stat-month-sub').textContent = `${hours.toFixed(hours < 10 ? 2 : 1)} GPU-hours`;
  }
  const card = $('budget-card');
  const limit = budget ? budget.monthlyLimitUsd : null;
  card.hidden = limit === null || limit === undefined;
  if (card.hidden) return;
  const over = budget.exceeded || budget.projectedUsd > limit;
  card.className = `stat budget${over ? ' over' : ''}${budget.exceeded ? ' exceeded' : ''}`;
  $('stat-budget').textContent = money(limit);
  $('budget-meter').style.width = `${Math.min(100, limit > 0 ? (100 * budget.spentUsd) / limit : 100)}%`;
  const then = budget.exceeded ? 'creates refused' : `by ${monthEnd(budget.month ? `${budget.month}-01T00:00:00Z` : new Date().toISOString())}`;
  $('stat-budget-sub').textContent = budget.exceeded
    ? `exceeded: ${budget.onExceeded === 'stopAll' ? 'instances stopped, creates refused' : 'creates refused'}`
    : `projected ${money(budget.projectedUsd)} by month end`;
  card.title = `Spent ${money(budget.spentUsd)} of ${money(limit)} this month, ${money(budget.ratePerHourUsd)}/h now; ` +
    `at this rate ${money(budget.projectedUsd)} ${then}.`;
}

function spendSoon() {
  // A burst of events ends in one read of the costs, a second after the last of them.
  clearTimeout(spendSoon.timer);
  spendSoon.timer = setTimeout(() => loadSpend(), 1000);
}

// -- actions ----------------------------------------------------------------------------------------

async function act(view, action, body) {
  const answer = await api('POST', `/api/instances/${encodeURIComponent(view.instanceId)}/${action}`, body);
  toast(answer.message || `${view.name}: ${answer.status}`, 'info');
  refresh(view.instanceId);
}

async function giveBack(view) {
  const pool = (view.pool && view.pool.name) || 'its pool';
  const sure = await confirmDialog(
    `Return ${view.name} to ${pool}? It is stopped and kept as an idle member if the pool wants one, else deleted ` +
    '(its disk with it); either way it is no longer yours.', 'Return to pool');
  focusRow(view.instanceId, 'Return to pool', 'History');
  if (!sure) return;
  await act(view, 'stop', { returnToPool: true });
  poolsSoon();
}

function confirmDialog(text, okLabel) {
  // Escape cancels (the dialog's own cancel event); the caller puts the focus back.
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => () => { dialog.close(); resolve(answer); };
    $('confirm-ok').onclick = done(true);
    $('confirm-cancel').onclick = done(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
  });
}

async function remove(view) {
  const sure = await confirmDialog(`Delete ${view.name}? Novita deletes the instance and its disk; this cannot be undone.`, 'Delete');
  // The row may have been redrawn meanwhile: focus goes to its button (History once it is deleting).
  focusRow(view.instanceId, 'Delete', 'History');
  if (!sure) return;
  await api('DELETE', `/api/instances/${encodeURIComponent(view.instanceId)}`);
  toast(`${view.name} is being deleted.`, 'info');
  refresh(view.instanceId);
}

async function create(event) {
  event.preventDefault();
  const error = $('create-error');
  error.hidden = true;
  const name = $('f-name').value.trim();
  const body = { name, productName: $('f-product').value, templateId: $('f-template').value };
  const minutes = $('f-autostop').value;
  if (minutes !== '') body.autoStopMinutes = Number(minutes);
  const button = $('create-button');
  button.disabled = true;
  rememberProduct();
  try {
    const view = await api('POST', '/api/instances', body);
    state.instances.set(view.instanceId, view);
    render();
    $('f-name').value = '';
    toast(`${view.name} is being created.`, 'info');
  } catch (failure) {
    let message = errorText(failure);
    if (failure instanceof ApiError && failure.details.some((d) => d.field === 'name')) {
      message = `The name "${name}" was refused: ${failure.details.find((d) => d.field === 'name').message}. ` +
        'Use letters, digits, - and _ (up to 63).';
    }
    error.textContent = message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function rememberProduct() {
  try { localStorage.setItem(PRODUCT_STORAGE, $('f-product').value); } catch (_) { /* storage off: no memory */ }
}

function rememberedProduct() {
  try { return localStorage.getItem(PRODUCT_STORAGE); } catch (_) { return null; }
}

// The lowest price one can have a product at now: of its available offers (null: sold out). The
// answer's cheapestPricePerHour counts sold-out offers too.
function availablePrice(product) {
  if (!product.available) return null;
  const prices = (product.offers || []).filter((o) => o.available).map((o) => o.pricePerHour);
  return prices.length ? Math.min(...prices) : product.cheapestPricePerHour;
}

async function loadCatalog() {
  const [products, templates] = await Promise.all([api('GET', '/api/products'), api('GET', '/api/templates')]);
  const productSelect = $('f-product');
  let cheapest = null;
  productSelect.replaceChildren(...products.products.map((p) => {
    const price = availablePrice(p);
    const option = el('option', { text: `${p.productName} · from ${money(price ?? p.cheapestPricePerHour)}/h${price === null ? ' · sold out' : ''}` });
    option.value = p.productName;
    option.disabled = price === null;
    if (price !== null && (cheapest === null || price < cheapest.price)) cheapest = { price, name: p.productName };
    return option;
  }));
  // The user's last pick while it can be had, else the cheapest product one can have now.
  const remembered = [...productSelect.options].find((o) => o.value === rememberedProduct() && !o.disabled);
  if (remembered) productSelect.value = remembered.value;
  else if (cheapest) productSelect.value = cheapest.name;
  const templateSelect = $('f-template');
  templateSelect.replaceChildren(...templates.templates.map((t) => {
    const option = el('option', { text: `${t.name} · ${t.image}` });
    option.value = t.id;
    return option;
  }));
  // The new pool form offers the same GPUs and templates.
  $('p-product').replaceChildren(...[...productSelect.options].map((o) => o.cloneNode(true)));
  $('p-product').value = productSelect.value;
  $('p-template').replaceChildren(...[...templateSelect.options].map((o) => o.cloneNode(true)));
}

// -- history ----------------------------------------------------------------------------------------

async function showHistory(instanceId) {
  state.historyOf = instanceId;
  const view = state.instances.get(instanceId);
  $('history-name').textContent = view ? view.name : instanceId;
  showRecovery(view);
  const answer = await api('GET', `/api/instances/${encodeURIComponent(instanceId)}/events`);
  if (state.historyOf !== instanceId) return;
  $('history-rows').replaceChildren(...answer.events.slice().reverse().map((e) => {
    const hooks = el('td', { className: 'small' });
    for (const w of e.webhooks) {
      const text = `${w.status}${w.attempts > 1 ? ` ×${w.attempts}` : ''}${w.lastStatusCode ? ` (${w.lastStatusCode})` : ''}`;
      hooks.append(el('span', { className: `chip wh-${w.status}`, text, title: w.lastError || w.url }));
    }
    if (!e.webhooks.length) hooks.textContent = '—';
    return el('tr', {},
      el('td', { className: 'mono small at', text: stamp(e.at) }),
      el('td', { text: e.from === e.to ? e.to : `${e.from || '—'} → ${e.to}` }),  // same: a notice, not a change
      el('td', { text: e.reason || '—' }),
      el('td', { className: 'small', text: e.message || '' }),
      hooks);
  }));
  $('history').hidden = false;
}

async function openHistory(instanceId) {
  await showHistory(instanceId);
  if (state.historyOf !== instanceId) return;
  $('history').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  $('history-close').focus({ preventScroll: true });
}

function closeHistory() {
  // Focus that would be lost with the panel goes back to the row's History button; elsewhere it stays.
  const instanceId = state.historyOf;
  const active = document.activeElement;
  const lost = !active || active === document.body || $('history').contains(active);
  $('history').hidden = true;
  state.historyOf = null;
  if (instanceId && lost) focusRow(instanceId, 'History');
}

// -- who is calling, and the team's quotas and keys (admin and owner keys) ------------------------------

function showWho() {
  const me = state.me;
  $('whoami').hidden = !me;
  $('create-card').hidden = !may('member');
  $('team-card').hidden = !isAdmin();
  $('audit-card').hidden = !isAdmin();
  $('pool-form').hidden = !isAdmin();
  $('team-pick-label').hidden = !isOwner();
  $('a-team-label').hidden = !isOwner();
  $('k-role').querySelector('option[value="owner"]').hidden = !isOwner();
  document.body.classList.toggle('owner', isOwner());
  if (!me) return;
  const team = me.teamName || me.team;
  const key = me.keyName || me.keyId;
  // A key of API_KEYS or ADMIN_API_KEYS is a team of its own, of the same name: said once.
  $('whoami').textContent = [team, key === team ? null : key, me.role].filter(Boolean).join(' · ');
  $('whoami').title = `Team ${team} (${me.team}), key ${key} (${me.keyId}), role ${me.role}`;
}

function keyStatus(key) {
  const past = (iso) => Boolean(iso) && Date.parse(iso) <= Date.now();
  if (key.revokedAt) return 'revoked';
  if (past(key.expiresAt)) return 'expired';
  if (key.previousValidUntil && !past(key.previousValidUntil)) return 'rotating';
  return 'active';
}

function ago(iso) {
  return iso ? `${duration(secondsSince(iso))} ago` : 'never';
}

function renderQuota(id, use, format) {
  const node = $(id);
  const used = use ? use.used : null;
  const limit = use ? use.limit : null;
  node.querySelector('.quota-value').textContent = limit === null || limit === undefined
    ? format(used) : `${format(used)} of ${format(limit)}`;
  const share = limit ? Math.min(1, (used || 0) / limit) : (limit === 0 ? 1 : 0);
  node.querySelector('.meter span').style.width = `${Math.round(share * 100)}%`;
  node.classList.toggle('over', limit !== null && limit !== undefined && (used || 0) >= limit);
  node.querySelector('.stat-sub').textContent = limit === null || limit === undefined
    ? 'no limit' : `${format(Math.max(0, limit - (used || 0)))} left`;
}

function renderTeam() {
  const team = state.team;
  if (!team) return;
  $('team-title').textContent = team.name;
  $('team-title').title = team.id;
  const use = team.use || {};
  renderQuota('quota-gpus', use.gpus, (v) => String(v ?? 0));
  renderQuota('quota-usd', use.usdPerHour, (v) => money(v, 2));
  renderQuota('quota-month', use.monthUsd, (v) => money(v, 2));
}

async function loadTeam() {
  const team = await api('GET', `/api/teams/${encodeURIComponent(state.teamShown)}`);
  if (team.id !== state.teamShown && team.name !== state.teamShown) return;  // another team picked meanwhile
  state.team = team;
  renderTeam();
}

function teamSoon() {
  // An instance that starts or stops changes what the team holds: one read after a burst of events.
  clearTimeout(teamSoon.timer);
  teamSoon.timer = setTimeout(() => loadTeam().catch(() => {}), 1500);
}

function keyRow(key) {
  const status = keyStatus(key);
  const actions = el('td', { className: 'actions' });
  // An admin manages keys up to its own role; a revoked key is done with.
  if (status !== 'revoked' && rank(key.role) <= rank(state.me.role)) {
    actions.append(actionButton('Rotate', 'small', () => rotateKey(key)));
    actions.append(actionButton('Revoke', 'small danger-ghost', () => revokeKey(key)));
  }
  const name = el('td', { className: 'name' },
    el('div', { className: 'iname strong', text: key.name, title: key.name }), idButton(key.id));
  if (state.me && key.id === state.me.keyId) name.append(el('div', { className: 'muted small', text: 'the key of this page' }));
  const expires = el('td', { className: 'at small col-expires', text: key.expiresAt ? stamp(key.expiresAt) : 'never' });
  const tr = el('tr', { data: { id: key.id } },
    name,
    el('td', { text: key.role }),
    el('td', { className: 'mono small col-prefix', text: key.prefix }),
    el('td', { className: 'at small', text: ago(key.lastUsedAt), title: key.lastUsedAt ? stamp(key.lastUsedAt) : '' }),
    expires,
    el('td', {}, el('span', {
      className: `badge ks-${status}`, text: status, data: { status },
      title: status === 'rotating' ? `The old secret works until ${stamp(key.previousValidUntil)} UTC` : '',
    })),
    actions);
  if (status === 'revoked' || status === 'expired') tr.classList.add('gone');
  return tr;
}

function renderKeys() {
  const showRevoked = $('show-revoked').checked;
  const shown = state.keys.filter((k) => showRevoked || !k.revokedAt);
  $('key-rows').replaceChildren(...shown.map(keyRow));
  const hidden = state.keys.length - shown.length;
  $('keys-empty').hidden = shown.length > 0;
  // Without any key (the service answers every local caller as the owner), the first key is made on the
  // server: the API refuses it (docs/teams.md).
  const keyless = !state.key && state.me && state.me.keyId === 'default';
  $('new-key-form').hidden = keyless;
  $('keys-empty').textContent = keyless
    ? 'This service has no API keys yet: make the first one on the server (novita-gpu keys create --team NAME --role admin --name NAME).'
    : hidden
      ? `No live keys (${hidden} revoked: tick "show revoked" to see ${hidden === 1 ? 'it' : 'them'}).`
      : 'No keys in the store for this team yet: create one below.';
}

async function loadKeys() {
  const answer = await api('GET', `/api/keys?${new URLSearchParams({ team: state.teamShown })}`);
  state.keys = answer.keys;
  renderKeys();
}

function showTeam() {
  $('quota-form').hidden = true;
  loadTeam().catch((error) => toast(`The team could not be loaded: ${errorText(error)}`));
  loadKeys().catch((error) => toast(`The keys could not be loaded: ${errorText(error)}`));
}

async function startTeamPanel() {
  state.teamShown = state.me.team;
  if (isOwner()) {
    try {
      state.teams = (await api('GET', '/api/teams')).teams;
    } catch (_) { state.teams = []; }
    const option = (team) => { const node = el('option', { text: team.name }); node.value = team.id; return node; };
    $('team-pick').replaceChildren(...state.teams.map(option));
    $('team-pick').value = state.teamShown;
    $('a-team').replaceChildren($('a-team').options[0], ...state.teams.map(option));
  }
  showTeam();
}

function editQuotas() {
  const quotas = (state.team && state.team.quotas) || {};
  const value = (v) => (v === null || v === undefined ? '' : String(v));
  $('q-gpus').value = value(quotas.maxGpus);
  $('q-usd').value = value(quotas.maxUsdPerHour);
  $('q-month').value = value(quotas.monthlyBudgetUsd);
  $('quota-error').hidden = true;
  $('quota-form').hidden = false;
  $('q-gpus').focus();
}

async function saveQuotas(event) {
  event.preventDefault();
  // Only what changed is sent: a quota left out keeps its value; an empty field is no limit (null).
  const current = (state.team && state.team.quotas) || {};
  const quotas = {};
  for (const [field, input] of [['maxGpus', 'q-gpus'], ['maxUsdPerHour', 'q-usd'], ['monthlyBudgetUsd', 'q-month']]) {
    const raw = $(input).value.trim();
    const value = raw === '' ? null : Number(raw);
    if (value !== (current[field] ?? null)) quotas[field] = value;
  }
  $('quota-save').disabled = true;
  try {
    if (Object.keys(quotas).length) {
      state.team = await api('PATCH', `/api/teams/${encodeURIComponent(state.teamShown)}`, { quotas });
      renderTeam();
      toast(`Quotas of ${state.team.name} saved.`, 'info');
      auditSoon();
    }
    $('quota-form').hidden = true;
  } catch (error) {
    $('quota-error').textContent = errorText(error);
    $('quota-error').hidden = false;
  } finally {
    $('quota-save').disabled = false;
  }
}

function showSecret(key, made) {
  $('secret-title').textContent = made
    ? `Key ${key.name} (${key.role} of ${key.teamName}) created.`
    : `Key ${key.name} rotated: the old secret works until ${stamp(key.previousValidUntil)} UTC.`;
  $('secret-value').textContent = key.secret;
  $('secret-box').hidden = false;
  $('secret-copy').focus();
}

function hideSecret() {
  // The secret is never kept: gone from the page once read.
  $('secret-value').textContent = '';
  $('secret-box').hidden = true;
}

async function createKey(event) {
  event.preventDefault();
  const error = $('key-form-error');
  error.hidden = true;
  const button = $('k-create');
  button.disabled = true;
  try {
    const body = { name: $('k-name').value.trim(), role: $('k-role').value, team: state.teamShown };
    const key = await api('POST', '/api/keys', body);
    $('k-name').value = '';
    showSecret(key, true);
    loadKeys().catch(() => {});
    loadTeam().catch(() => {});
    auditSoon();
  } catch (failure) {
    error.textContent = errorText(failure);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function rotateKey(key) {
  const sure = await confirmDialog(
    `Rotate ${key.name}? A new secret is shown once; the old one keeps working for a grace period (a day by default).`,
    'Rotate');
  if (!sure) return;
  const rotated = await api('POST', `/api/keys/${encodeURIComponent(key.id)}/rotate`);
  showSecret(rotated, false);
  loadKeys().catch(() => {});
  auditSoon();
}

async function revokeKey(key) {
  const own = state.me && key.id === state.me.keyId;
  const sure = await confirmDialog(
    `Revoke ${key.name}? Whatever uses it is refused from now on.${own ? ' It is the key of this page: it will ask for another.' : ''}`,
    'Revoke');
  if (!sure) return;
  await api('DELETE', `/api/keys/${encodeURIComponent(key.id)}`);
  toast(`${key.name} is revoked.`, 'info');
  if (own) { start(); return; }  // the service now refuses it: the page asks for a key
  loadKeys().catch(() => {});
  loadTeam().catch(() => {});
  auditSoon();
}

// -- the audit trail (admin keys: the team's; owner keys: every team's) ----------------------------------

function auditQuery(more) {
  const query = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  for (const [name, id] of [['actor', 'a-actor'], ['action', 'a-action'], ['target', 'a-target']]) {
    const value = $(id).value.trim();
    if (value) query.set(name, value);
  }
  if (isOwner() && $('a-team').value) query.set('team', $('a-team').value);
  for (const [name, id] of [['from', 'a-from'], ['to', 'a-to']]) {
    const value = $(id).value;  // local time, as the browser shows it: sent as UTC
    if (value) query.set(name, new Date(value).toISOString());
  }
  if (more && state.audit.cursor) query.set('cursor', state.audit.cursor);
  return query;
}

function teamName(id) {
  const found = state.teams.find((t) => t.id === id);
  if (found) return found.name;
  return state.me && id === state.me.team ? (state.me.teamName || id) : id;
}

function auditRow(e) {
  const system = (e.actor || '').startsWith('system:');
  const outcome = e.outcome || '—';
  return el('tr', {},
    el('td', { className: 'mono small at', text: stamp(e.at) }),
    el('td', { className: 'small' }, el('div', {
      className: `iname${system ? ' muted' : ''}`, text: system ? e.actor : (e.actorName || e.actor), title: e.actor,
    })),
    el('td', { className: 'mono small', text: e.action }),
    el('td', { className: 'small' }, el('div', { className: 'id-text mono', text: e.target || '—', title: e.target || '' })),
    el('td', {}, el('span', { className: `chip ${outcome === 'ok' ? 'outcome-recovered' : 'outcome-failed'}`, text: outcome })),
    el('td', { className: 'small col-team', text: teamName(e.team), title: e.team }),
    el('td', { className: 'small col-request' }, el('div', { className: 'id-text mono muted', text: e.requestId || '—', title: e.requestId || '' })));
}

function renderAudit() {
  const audit = state.audit;
  $('audit-rows').replaceChildren(...audit.events.map(auditRow));
  const empty = $('audit-empty');
  empty.classList.remove('loading');
  $('audit-filters').hidden = audit.missing;
  $('audit-more').hidden = !audit.cursor;
  if (audit.missing) empty.textContent = 'This service keeps no audit trail (GET /api/audit is not there): upgrade it.';
  else if (audit.error) empty.textContent = `The audit trail could not be loaded: ${audit.error}`;
  else empty.textContent = 'No audit events match.';
  empty.hidden = !audit.missing && !audit.error && audit.events.length > 0;
}

async function loadAudit(more = false) {
  const audit = state.audit;
  try {
    const page = await api('GET', `/api/audit?${auditQuery(more)}`);
    audit.events = more ? [...audit.events, ...page.events] : page.events;
    audit.pages = more ? audit.pages + 1 : 1;
    audit.cursor = page.nextCursor;
    audit.error = null;
  } catch (error) {
    audit.missing = error instanceof ApiError && error.code === 'NOT_FOUND';  // the route, not a team
    audit.error = audit.missing ? null : errorText(error);
    if (!more) audit.events = [];
  }
  renderAudit();
}

function auditSoon() {
  // New rows after an event or an action of this page; a reader who paged back is left where they are.
  if (!isAdmin() || state.audit.missing || state.audit.pages > 1) return;
  clearTimeout(auditSoon.timer);
  auditSoon.timer = setTimeout(() => loadAudit(), 1500);
}

// -- warm pools -------------------------------------------------------------------------------------

const percent = (fraction) => `${Math.round((fraction || 0) * 100)}%`;

function poolRow(pool) {
  const m = pool.members || {};
  const claims = pool.claims || {};
  const cost = pool.idleCost || {};
  const spec = `${pool.gpuNum > 1 ? `${pool.gpuNum}× ` : ''}${pool.productName}${pool.region ? ` · ${pool.region}` : ''}`;
  const name = el('td', { className: 'name' },
    el('div', { className: 'iname strong', text: pool.name, title: pool.poolId }),
    el('div', { className: 'muted small product', text: spec, title: `Template ${pool.templateId}` }));
  if (pool.status === 'draining') name.append(el('span', { className: 'badge st-deleting', text: 'draining' }));
  else if (pool.dormant) name.append(el('div', { className: 'muted small', text: `dormant: no claim for ${pool.idleMinutes} min` }));
  const members = el('td', { className: 'members' },
    ...[['ready', 'st-ready'], ['stopped', 'st-stopped'], ['warming', 'st-starting'], ['claimed', 'st-claimed']].map(([key, style]) =>
      el('span', { className: `badge member ${style}${m[key] ? '' : ' zero'}`, text: `${m[key] || 0} ${key}`, data: { state: key } })),
    el('div', { className: 'muted small', text: `${m.total || 0} of at most ${pool.max} · keeps ${pool.minReady} ready, ${pool.minStopped} stopped` }));
  if (pool.refillBlocked) {
    members.append(el('div', { className: 'small blocked', text: `refill blocked: ${pool.refillBlocked.message || pool.refillBlocked.code}`,
      title: `${pool.refillBlocked.code} since ${stamp(pool.refillBlocked.at)}` }));
  }
  const day = claims.lastDay || 0;
  const rates = claims.hitRate || {};
  const hits = el('td', { className: 'hits small' });
  if (day) {
    for (const source of CLAIM_SOURCES) hits.append(el('span', { className: `chip hit-${source}`, text: `${source} ${percent(rates[source])}` }));
  } else {
    hits.textContent = '— no claim today';
  }
  const tasks = ((pool.prewarm || {}).tasks || []);
  if ((pool.prewarm || {}).enabled) {
    hits.append(el('div', { className: 'muted small', text: `prewarm: ${tasks.map((t) => t.state).join(', ') || 'asked'}`,
      title: tasks.map((t) => `cluster ${t.clusterId}: ${t.state} (${t.taskId})`).join('\n') }));
  }
  const idle = el('td', { className: 'num idle-cost' },
    el('div', { text: `${money(cost.usdPerHour, 4)}/h` }),
    el('div', { className: 'muted small', text: `${money(cost.monthUsd)} this month` }));
  idle.title = `Ready GPUs ${money(cost.readyUsdPerHour, 4)}/h + stopped disks ${money(cost.stoppedUsdPerHour, 4)}/h`;
  const actions = el('td', { className: 'actions' });
  if (pool.status === 'active' && may('member')) actions.append(actionButton('Claim', 'small', () => openClaim(pool)));
  if (pool.status === 'active' && isAdmin()) actions.append(actionButton('Delete', 'small danger-ghost', () => removePool(pool)));
  return el('tr', { data: { pool: pool.name } },
    name, members,
    el('td', { className: 'num claims', text: `${claims.lastHour || 0} / ${day}`, title: `${claims.lastHour || 0} in the last hour, ${day} in the last day` }),
    hits, idle, actions);
}

function renderPools() {
  const shown = JSON.stringify([state.pools, state.me && state.me.role]);
  if (shown !== state.poolsShown) {  // a reload that changed nothing leaves the rows (and the focus) alone
    state.poolsShown = shown;
    $('pool-rows').replaceChildren(...state.pools.map(poolRow));
  }
  const empty = $('pools-empty');
  empty.classList.toggle('loading', !state.poolsLoaded);
  if (!state.poolsLoaded) empty.textContent = state.poolsError ? `Pools could not be loaded: ${state.poolsError} Retrying…` : 'Loading pools…';
  else empty.textContent = isAdmin() ? 'No warm pools yet: make one below.' : 'No warm pools yet (an admin key makes them).';
  empty.hidden = state.poolsLoaded && state.pools.length > 0;
}

async function loadPools() {
  if (loadPools.busy) return loadPools.busy;
  state.poolsAt = Date.now();
  loadPools.busy = api('GET', '/api/pools').then((answer) => {
    state.pools = answer.pools;
    state.poolsLoaded = true;
    state.poolsError = null;
    renderPools();
  }).catch((error) => {
    if (error instanceof ApiError && error.status === 404) {  // a service from before pools: no panel
      $('pools-card').hidden = true;
      return;
    }
    if (state.poolsLoaded) return;
    state.poolsError = errorText(error);
    renderPools();
  }).finally(() => { loadPools.busy = null; });
  return loadPools.busy;
}

function poolsDue() {
  // Pools send no events of their own: read again every 2 s while one fills or drains, else every 10 s, and
  // after instance events (poolsSoon: a member changed).
  const moving = state.pools.some((p) => p.status === 'draining' || (p.members || {}).warming > 0 ||
    ((p.members || {}).ready || 0) + ((p.members || {}).stopped || 0) + ((p.members || {}).warming || 0) <
      Math.min(p.minReady + p.minStopped, p.max - ((p.members || {}).claimed || 0)));
  if (!$('pools-card').hidden && (!state.poolsLoaded || moving || Date.now() - state.poolsAt >= 10000)) loadPools();
}

function poolsSoon() {
  clearTimeout(poolsSoon.timer);
  poolsSoon.timer = setTimeout(() => { if (!$('pools-card').hidden) loadPools(); }, 700);
}

function openClaim(pool) {
  state.claiming = pool;
  $('claim-text').textContent = `Claim an instance from ${pool.name}: ` +
    ((pool.members || {}).ready ? 'a ready member is handed out at once.' : (pool.members || {}).stopped
      ? 'a stopped member is started (its image is on its node).' : 'no member is idle, so one is created from its spec.');
  $('claim-name').value = '';
  $('claim-error').hidden = true;
  $('claim-dialog').showModal();
  $('claim-name').focus();
}

function closeClaim() {
  const pool = state.claiming;
  $('claim-dialog').close();
  state.claiming = null;
  const tr = pool && [...$('pool-rows').children].find((node) => node.dataset.pool === pool.name);
  const button = tr && [...tr.querySelectorAll('button')].find((b) => b.textContent === 'Claim');
  if (button) button.focus();
}

async function claim(event) {
  event.preventDefault();
  const pool = state.claiming;
  if (!pool) return;
  const name = $('claim-name').value.trim();
  $('claim-ok').disabled = true;
  try {
    const view = await api('POST', `/api/pools/${encodeURIComponent(pool.name)}/claim`, { name });
    state.instances.set(view.instanceId, view);
    render();
    closeClaim();
    const how = { ready: 'ready at once', stopped: 'starting a stopped member', warming: 'a member warming up', cold: 'created cold' };
    toast(`${view.name} claimed from ${pool.name}: ${how[view.claim.source] || view.claim.source}.`, 'info');
    refresh(view.instanceId);
    poolsSoon();
  } catch (failure) {
    $('claim-error').textContent = errorText(failure);
    $('claim-error').hidden = false;
  } finally {
    $('claim-ok').disabled = false;
  }
}

async function createPool(event) {
  event.preventDefault();
  const error = $('pool-error');
  error.hidden = true;
  const number = (id) => Number($(id).value);
  const body = {
    name: $('p-name').value.trim(), productName: $('p-product').value, templateId: $('p-template').value,
    minReady: number('p-ready'), minStopped: number('p-stopped'), max: number('p-max'), idleMinutes: number('p-idle'),
  };
  $('p-create').disabled = true;
  try {
    const pool = await api('POST', '/api/pools', body);
    state.pools = [...state.pools.filter((p) => p.name !== pool.name), pool];
    state.poolsLoaded = true;
    renderPools();
    $('p-name').value = '';
    toast(`Pool ${pool.name} made: the service fills it in the background.`, 'info');
    auditSoon();
  } catch (failure) {
    error.textContent = errorText(failure);
    error.hidden = false;
  } finally {
    $('p-create').disabled = false;
  }
}

async function removePool(pool) {
  const m = pool.members || {};
  const idle = (m.ready || 0) + (m.stopped || 0) + (m.warming || 0);
  const sure = await confirmDialog(
    `Delete pool ${pool.name}? Its ${idle} idle member${idle === 1 ? '' : 's'} ${idle === 1 ? 'is' : 'are'} deleted with their disks; ` +
    `${m.claimed ? `the ${m.claimed} claimed instance${m.claimed === 1 ? '' : 's'} stay${m.claimed === 1 ? 's' : ''} yours.` : 'nothing claimed is touched.'}`,
    'Delete');
  if (!sure) return;
  const answer = await api('DELETE', `/api/pools/${encodeURIComponent(pool.name)}`);
  state.pools = state.pools.map((p) => (p.name === answer.name ? answer : p));
  renderPools();
  toast(`Pool ${pool.name} is draining: its idle members are being deleted.`, 'info');
  auditSoon();
}

// -- the event stream -------------------------------------------------------------------------------

function setLive(on, text) {
  const node = $('live');
  node.className = `live ${on ? 'on' : 'off'}`;
  node.textContent = text || (on ? 'live' : 'reconnecting…');
}

function onEvent(message) {
  if (message.event === 'close') return;  // the server ends the stream; the loop reconnects from the last id
  if (message.id) state.lastEventId = message.id;
  let body;
  try { body = JSON.parse(message.data); } catch (_) { return; }
  const view = state.instances.get(body.instanceId);
  if (view) {
    Object.assign(view, {
      status: body.status,
      statusReason: body.data ? body.data.statusReason : view.statusReason,
      statusMessage: body.data ? body.data.statusMessage : view.statusMessage,
    });
    render();
  }
  refresh(body.instanceId);
  spendSoon();
  volumesSoon();
  poolsSoon();
  if (state.historyOf === body.instanceId) showHistory(body.instanceId).catch(() => {});
  auditSoon();
  if (isAdmin()) teamSoon();
}

async function readStream(response, onConnected) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let message = { event: '', data: [], id: null };
  let lastByte = Date.now();
  const watchdog = setInterval(() => { if (Date.now() - lastByte > 45000) reader.cancel(); }, 5000);
  onConnected();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      lastByte = Date.now();
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, '');
        buffer = buffer.slice(end + 1);
        if (line === '') {
          if (message.data.length || message.event) onEvent({ event: message.event || 'message', data: message.data.join('\n'), id: message.id });
          message = { event: '', data: [], id: null };
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') message.event = value;
          else if (field === 'data') message.data.push(value);
          else if (field === 'id') message.id = value;
        }
      }
    }
  } finally {
    clearInterval(watchdog);
  }
}

async function follow() {
  let delay = 500;
  let first = true;
  for (;;) {
    try {
      const extra = { Accept: 'text/event-stream' };
      if (state.lastEventId) extra['Last-Event-ID'] = state.lastEventId;
      const response = await fetch('/api/events/stream', { headers: headers(extra), cache: 'no-store' });
      if (response.status === 401) { askKey('The service refused this key.'); return; }
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      await readStream(response, () => {
        setLive(true);
        delay = 500;
        // The stream is registered before its headers come: a load now misses nothing after it.
        if (first) { first = false; loadInstancesShowingErrors(); }
        else loadInstances().catch(() => {});
      });
      delay = 200;  // ended by the server (a restart, or this tab fell behind): back at once
    } catch (error) {
      if (error instanceof ApiError && error.status === 429) setLive(false, 'too many streams');
      // No stream yet: the table need not wait for one (the minute's reload keeps it fresh meanwhile).
      if (!state.loaded) loadInstancesShowingErrors();
    }
    setLive(false);
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
}

// -- start ------------------------------------------------------------------------------------------

function askKey(message) {
  state.timers.forEach(clearInterval);
  state.timers = [];
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.started = false;
  state.me = null;
  $('app').hidden = true;
  $('key-panel').hidden = false;
  $('sign-out').hidden = true;
  $('whoami').hidden = true;
  hideSecret();
  setLive(false, 'no key');
  $('key-error').hidden = !message;
  $('key-error').textContent = message || '';
  $('key-input').focus();
}

async function start() {
  const hadKey = Boolean(state.key);
  state.me = null;
  try {
    state.me = await api('GET', '/api/me');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { askKey(hadKey ? 'The service refused this key.' : null); return; }
    if (!(error instanceof ApiError && error.status === 404)) {  // 404: a service from before roles
      setLive(false, 'service unreachable');
      toast(errorText(error));
    }
  }
  state.started = true;
  state.everStarted = true;
  $('key-panel').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = !state.key;
  showWho();
  api('GET', '/health').then((h) => { $('mode').textContent = h.mode === 'emulator' ? 'emulator' : ''; }).catch(() => {});
  loadCatalog().catch((error) => toast(`Products and templates could not be loaded: ${errorText(error)}`));
  loadStats();
  loadSpend();
  loadVolumesShowingErrors();
  loadPools();
  follow();
  state.timers.push(setInterval(tick, 1000), setInterval(loadStats, 30000), setInterval(loadSpend, 30000),
    setInterval(() => loadInstances().catch(() => {}), 60000), setInterval(volumesDue, 2000), setInterval(poolsDue, 2000));
  if (isAdmin()) {
    startTeamPanel();
    loadAudit();
    state.timers.push(setInterval(() => loadTeam().catch(() => {}), 30000));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.key = $('key-input').value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    $('key-input').value = '';
    // A key asked for again (the last one was refused): a fresh page, so nothing of the last one runs on.
    if (state.everStarted) location.reload();
    else start();
  });
  $('sign-out').addEventListener('click', () => { askKey(null); location.reload(); });
  $('create-form').addEventListener('submit', create);
  $('show-terminated').addEventListener('change', render);
  $('show-deleted').addEventListener('change', renderVolumes);
  $('history-close').addEventListener('click', closeHistory);
  $('f-product').addEventListener('change', rememberProduct);
  $('team-pick').addEventListener('change', () => { state.teamShown = $('team-pick').value; showTeam(); });
  $('quota-edit').addEventListener('click', editQuotas);
  $('quota-cancel').addEventListener('click', () => { $('quota-form').hidden = true; $('quota-error').hidden = true; });
  $('quota-form').addEventListener('submit', saveQuotas);
  $('show-revoked').addEventListener('change', renderKeys);
  $('new-key-form').addEventListener('submit', createKey);
  $('secret-copy').addEventListener('click', () => copy($('secret-value').textContent, $('secret-copy'), 'the secret'));
  $('secret-done').addEventListener('click', hideSecret);
  $('audit-filters').addEventListener('submit', (event) => { event.preventDefault(); loadAudit(); });
  $('audit-clear').addEventListener('click', () => { $('audit-filters').reset(); loadAudit(); });
  $('audit-refresh').addEventListener('click', () => loadAudit());
  $('audit-more').addEventListener('click', () => loadAudit(true));
  $('pool-form').addEventListener('submit', createPool);
  $('claim-form').addEventListener('submit', claim);
  $('claim-cancel').addEventListener('click', closeClaim);
  $('claim-dialog').addEventListener('cancel', (event) => { event.preventDefault(); closeClaim(); });
  document.addEventListener('keydown', (event) => {
    // Escape in the open dialog is the dialog's (it cancels and closes); otherwise it closes the history.
    if (event.key !== 'Escape' || event.defaultPrevented || $('confirm').open || $('claim-dialog').open) return;
    if (!$('history').hidden) { event.preventDefault(); closeHistory(); }
  });
  start();
});
