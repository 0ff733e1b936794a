// The refract console: one page over the HTTP API. Everything shown that
// comes from the server (event data, names, errors, rows) is set as text
// through `el` — never as markup.

const TOKEN_KEY = 'refract-token';
const $ = (selector, root = document) => root.querySelector(selector);

/** An element: `attrs` are attributes (strings), `on*` functions are
 *  listeners; children are nodes or strings (as text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let info = { writes_need_token: false, reads_need_token: false };
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
const canWrite = () => !info.writes_need_token || token() !== '';

/** Calls the API; `{status, body}` (status 0: the server is out of reach). */
async function api(method, path, body, signal) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    return { status: 0, body: { error: `cannot reach refract: ${e.message}` } };
  }
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: text };
  }
  return { status: res.status, body: parsed };
}

/** The newest log position this tab wrote (a command's events): reads of
 *  a read model wait for it, so a command's effect is there at once. Kept
 *  for the tab's life, like the token. */
const WRITTEN_KEY = 'refract-written';
let written = Number(sessionStorage.getItem(WRITTEN_KEY)) || 0;
function wrote(position) {
  if (position != null && position > written) {
    written = position;
    sessionStorage.setItem(WRITTEN_KEY, String(position));
  }
}

/** A read of a read model, after this page's writes: with `min_position`
 *  when the page wrote; a projection that does not get there in time
 *  (paused, failed, far behind) is read as it is, and `behind` says so. */
async function readAfterWrites(method, path, body) {
  if (written > 0) {
    let r;
    if (method === 'GET') {
      const sep = path.includes('?') ? '&' : '?';
      r = await api(method, `${path}${sep}min_position=${written}&wait_ms=3000`);
    } else {
      r = await api(method, path, { ...body, min_position: written, wait_ms: 3000 });
    }
    if (r.status !== 504) return { ...r, behind: false };
  }
  return { ...(await api(method, path, body)), behind: written > 0 };
}

/** What a read shows of its position, and whether it misses this page's
 *  last command. */
function atPosition(r) {
  return `at position ${r.body.position}${r.behind ? ` — not yet at position ${written}, your last command` : ''}`;
}

function flash(message) {
  const f = $('#flash');
  f.textContent = message;
  f.hidden = !message;
}

/** Shows a failed call: its status and the server's reason. */
function failed(what, r) {
  const reason = (r.body && r.body.error) || '';
  const hint = r.status === 401 ? ' — the token is missing or wrong: enter it above' : '';
  flash(`${what}: ${r.status === 0 ? '' : `${r.status} `}${reason}${hint}`);
}

function authNote() {
  const note = $('#auth-note');
  if (info.writes_need_token && !token()) {
    note.textContent = 'Write actions (pause, resume, skip, rebuild, verify, dead letters, commands) need the token: enter it above. They are disabled until then.';
    note.hidden = false;
  } else {
    note.hidden = true;
  }
}

/** A button for a write action: disabled without the token when the
 *  server needs one. */
function writeButton(label, attrs, onclick) {
  const b = el('button', { ...attrs, onclick }, label);
  if (!canWrite()) {
    b.disabled = true;
    b.title = 'needs the token';
  }
  return b;
}

/** A button whose action waits for a second click on "Confirm". */
function confirmed(label, question, attrs, action) {
  const slot = el('span');
  const button = writeButton(label, attrs, () => {
    slot.replaceChildren(
      el('span', { class: 'confirm' }, question, ' ',
        el('button', { id: 'confirm-yes', class: 'danger', onclick: () => { slot.replaceChildren(); action(); } }, 'Confirm'), ' ',
        el('button', { id: 'confirm-no', class: 'secondary', onclick: () => slot.replaceChildren() }, 'Cancel')),
    );
  });
  return el('span', {}, button, ' ', slot);
}

function table(headers, rows, attrs = {}) {
  return el('table', attrs,
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { class: h.num ? 'num' : undefined }, h.label ?? h)))),
    el('tbody', {}, rows));
}

const short = (hash) => (hash ? String(hash).slice(0, 12) : '');
const pretty = (value) => JSON.stringify(value, null, 2);
const time = (ms) => (ms ? new Date(Number(ms)).toISOString().replace('T', ' ').replace('Z', '') : '');

// Timers and streams of the page shown; stopped when it changes.
let cleanups = [];
function every(ms, f) {
  const id = setInterval(f, ms);
  cleanups.push(() => clearInterval(id));
}

// ---------------------------------------------------------------- charts

/** Draws lag (events) and events/s over time, each on its own scale. */
function drawChart(canvas, samples) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * ratio;
  const h = canvas.clientHeight * ratio;
  canvas.width = w;
  canvas.height = h;
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#d9dee6';
  g.lineWidth = 1;
  g.strokeRect(0.5, 0.5, w - 1, h - 1);
  if (samples.length < 2) return;
  const t0 = samples[0].at;
  const span = Math.max(samples[samples.length - 1].at - t0, 1);
  const line = (pick, color) => {
    const max = Math.max(1, ...samples.map(pick));
    g.strokeStyle = color;
    g.lineWidth = 2 * ratio;
    g.beginPath();
    samples.forEach((s, i) => {
      const x = ((s.at - t0) / span) * (w - 8 * ratio) + 4 * ratio;
      const y = h - 4 * ratio - (pick(s) / max) * (h - 8 * ratio);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  };
  line((s) => s.events_per_second, '#2457c5');
  line((s) => s.lag, '#b3261e');
}

// ----------------------------------------------------------- projections

function statusCell(status) {
  return el('td', { 'data-k': 'status' }, el('span', { class: `status status-${status}` }, status));
}

function projectionRow(p) {
  if (p.status === 'invalid') {
    return el('tr', { 'data-name': p.name },
      el('td', {}, p.name), el('td', {}, 'plugin file'), statusCell('invalid'),
      el('td', { colspan: 6 }), el('td', { 'data-k': 'error', class: 'bad' }, p.error));
  }
  return el('tr', { 'data-name': p.name, class: 'clickable', onclick: () => { location.hash = `#/projection/${encodeURIComponent(p.name)}`; } },
    el('td', {}, el('a', { href: `#/projection/${encodeURIComponent(p.name)}` }, p.name)),
    el('td', {}, p.kind),
    statusCell(p.status),
    el('td', { class: 'num', 'data-k': 'position' }, p.position),
    el('td', { class: 'num', 'data-k': 'lag' }, p.lag),
    el('td', { class: 'num', 'data-k': 'lag_ms' }, p.lag_ms),
    el('td', { class: 'num', 'data-k': 'rate' }, Math.round(p.events_per_second || 0)),
    el('td', { class: 'num', 'data-k': 'dead_letters' }, p.dead_letters),
    el('td', { class: 'num' }, p.head),
    el('td', { 'data-k': 'error', class: 'bad' }, p.error ? `at ${p.error.position ?? '?'}: ${p.error.message}` : ''));
}

async function projectionsPage(main) {
  const body = el('tbody');
  const charts = el('div', { class: 'grid', id: 'charts' });
  main.append(
    el('h1', {}, 'Projections'),
    el('table', { id: 'projections' },
      el('thead', {}, el('tr', {}, ['name', 'kind', 'status', 'position', 'lag', 'lag ms', 'events/s', 'dead letters', 'head', 'error']
        .map((h, i) => el('th', { class: i >= 3 && i <= 8 ? 'num' : undefined }, h)))),
      body),
    el('h2', {}, 'Lag and throughput, last ten minutes'),
    el('p', { class: 'legend' }, el('span', { class: 'lag' }, '— lag (events)'), '  ', el('span', { class: 'rate' }, '— events/s'), ', each on its own scale'),
    charts,
  );
  const cards = new Map();
  const refresh = async () => {
    const r = await api('GET', '/projections');
    if (r.status !== 200) return failed('projections', r);
    body.replaceChildren(...r.body.projections.map(projectionRow));
    for (const p of r.body.projections.filter((p) => p.status !== 'invalid')) {
      let card = cards.get(p.name);
      if (!card) {
        card = { canvas: el('canvas', { class: 'chart' }), legend: el('div', { class: 'legend' }) };
        charts.append(el('div', { class: 'card', 'data-chart': p.name }, el('strong', {}, p.name), card.legend, card.canvas));
        cards.set(p.name, card);
      }
      const h = await api('GET', `/projections/${encodeURIComponent(p.name)}/history`);
      if (h.status === 200) {
        const last = h.body.samples[h.body.samples.length - 1];
        card.legend.textContent = last ? `lag ${last.lag} events (${last.lag_ms} ms) · ${Math.round(last.events_per_second)} events/s · ${h.body.samples.length} s shown` : 'no samples yet';
        drawChart(card.canvas, h.body.samples);
      }
    }
  };
  await refresh();
  every(1000, refresh);
}

// -------------------------------------------------------- one projection

async function projectionPage(main, name) {
  const path = `/projections/${encodeURIComponent(name)}`;
  const status = el('div', { id: 'status', class: 'card' });
  const verifyOut = el('div', { id: 'verify-result' });
  const act = (what, method, url, done) => async () => {
    const r = await api(method, url, {});
    if (r.status >= 400 || r.status === 0) return failed(what, r);
    flash('');
    if (done) done(r);
    showStatus();
  };
  const actions = el('div', { class: 'row' },
    confirmed('Pause', `Pause ${name}?`, { id: 'pause', class: 'secondary' }, act('pause', 'POST', `${path}/pause`)),
    writeButton('Resume', { id: 'resume', class: 'secondary' }, act('resume', 'POST', `${path}/resume`)),
    confirmed('Skip', `Skip the event ${name} stopped at (to its dead letters)?`, { id: 'skip', class: 'secondary' }, act('skip', 'POST', `${path}/skip`)),
    confirmed('Rebuild', `Rebuild ${name} from position 1 (the serving build answers until the new one is live)?`, { id: 'rebuild' }, act('rebuild', 'POST', `${path}/rebuild`)),
    writeButton('Verify', { id: 'verify', class: 'secondary' }, async () => {
      verifyOut.replaceChildren(el('p', { class: 'muted' }, 'verifying: rebuilding into a scratch database…'));
      const r = await api('POST', `${path}/verify`, {});
      if (r.status !== 200) { verifyOut.replaceChildren(); return failed('verify', r); }
      const v = r.body;
      verifyOut.replaceChildren(el('div', { class: 'card' },
        el('strong', { class: v.consistent ? 'ok' : 'bad' }, v.consistent ? `consistent with a fresh rebuild at position ${v.position}` : `DIFFERS from a fresh rebuild at position ${v.position}`),
        table(['table', { label: 'live rows', num: true }, { label: 'rebuilt rows', num: true }, { label: 'only live', num: true }, { label: 'only rebuilt', num: true }],
          v.tables.map((t) => el('tr', {}, el('td', {}, t.table), el('td', { class: 'num' }, t.live_rows ?? 'missing'), el('td', { class: 'num' }, t.rebuilt_rows ?? 'missing'), el('td', { class: 'num' }, t.only_live), el('td', { class: 'num' }, t.only_rebuilt))))));
    }),
  );
  const showStatus = async () => {
    const r = await api('GET', path);
    if (r.status !== 200) return failed(name, r);
    const s = r.body;
    const rows = [
      ['status', el('span', { class: `status status-${s.status}`, id: 'status-value' }, s.status)],
      ['kind · version', `${s.kind} · ${s.version}`],
      ['build', el('span', { class: 'mono' }, short(s.hash))],
      ['position · head · lag', `${s.position} · ${s.head} · ${s.lag} events (${s.lag_ms} ms)`],
      ['events/s', Math.round(s.events_per_second || 0)],
      ['dead letters', el('span', { id: 'dead-letter-count' }, s.dead_letters)],
      ['error', el('span', { class: 'bad' }, s.error ? `at position ${s.error.position ?? '?'} after ${s.error.attempts} attempt(s): ${s.error.message}` : '')],
    ];
    const parts = [el('table', {}, el('tbody', {}, rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))))];
    if (s.rebuild) {
      parts.push(el('div', { class: 'row', id: 'rebuild-progress' },
        el('span', {}, `new build ${short(s.rebuild.hash)} (${s.rebuild.status}): position ${s.rebuild.position} of ${s.head}`),
        el('progress', { id: 'progress', max: Math.max(s.head, 1), value: s.rebuild.position })));
    }
    status.replaceChildren(...parts);
  };

  // Tables and the row browser.
  const tableSelect = el('select', { id: 'table-select' });
  const filters = el('div', { class: 'row', id: 'filters' });
  const rowsOut = el('div', { id: 'rows' });
  let columns = [];
  let offset = 0;
  const tables = await api('GET', `${path}/tables`);
  const known = tables.status === 200 ? tables.body.tables : [];
  tableSelect.replaceChildren(...known.map((t) => el('option', { value: t.name }, `${t.name} (${t.kind})`)));
  const orderBy = el('select', { id: 'order-by' });
  const order = el('select', { id: 'order' }, el('option', { value: 'asc' }, 'ascending'), el('option', { value: 'desc' }, 'descending'));
  const limit = el('input', { id: 'limit', type: 'number', min: 1, max: 1000, value: 50, size: 5 });
  const pickTable = () => {
    const t = known.find((k) => k.name === tableSelect.value);
    columns = t ? t.columns.map((c) => c.name) : [];
    filters.replaceChildren(...columns.map((c) => el('input', { placeholder: `${c} =`, 'data-column': c, size: 12 })));
    orderBy.replaceChildren(el('option', { value: '' }, '(key)'), ...columns.map((c) => el('option', { value: c }, c)));
    offset = 0;
  };
  tableSelect.addEventListener('change', pickTable);
  pickTable();
  const loadRows = async (from) => {
    offset = from;
    const q = new URLSearchParams();
    for (const input of filters.querySelectorAll('input')) if (input.value !== '') q.set(input.dataset.column, input.value);
    if (orderBy.value) q.set('order_by', orderBy.value);
    q.set('order', order.value);
    q.set('limit', limit.value || '50');
    q.set('offset', String(offset));
    const r = await readAfterWrites('GET', `${path}/tables/${encodeURIComponent(tableSelect.value)}?${q}`);
    if (r.status !== 200) return failed('rows', r);
    flash('');
    const names = r.body.rows.length ? Object.keys(r.body.rows[0]) : columns;
    rowsOut.replaceChildren(
      table(names, r.body.rows.map((row) => el('tr', {}, names.map((n) => el('td', {}, cell(row[n])))))),
      el('div', { class: 'row' },
        el('span', { class: 'muted' }, `${r.body.rows.length} row(s) from ${offset}, ${atPosition(r)}`),
        r.body.next_offset != null ? el('button', { id: 'rows-next', class: 'secondary', onclick: () => loadRows(r.body.next_offset) }, 'Next page') : null));
  };

  // The SQL console.
  const sql = el('textarea', { id: 'sql', spellcheck: 'false' }, known[0] ? `SELECT * FROM ${known[0].name} LIMIT 20` : 'SELECT 1');
  const sqlOut = el('div', { id: 'sql-result' });
  const runSql = async () => {
    const r = await readAfterWrites('POST', `${path}/query`, { sql: sql.value });
    if (r.status !== 200) { sqlOut.replaceChildren(el('p', { class: 'bad' }, `${r.status}: ${(r.body && r.body.error) || ''}`)); return; }
    const q = r.body;
    sqlOut.replaceChildren(
      table(q.columns, q.rows.map((row) => el('tr', {}, row.map((v) => el('td', {}, cell(v)))))),
      el('p', { class: 'muted' }, `${q.rows.length} row(s) ${atPosition(r)}${q.truncated ? ` — truncated by ${q.truncated_by}` : ''}`));
  };

  // Dead letters.
  const deadOut = el('div', { id: 'dead-letters' });
  const loadDead = async () => {
    const r = await api('GET', `${path}/dead-letters`);
    if (r.status !== 200) {
      deadOut.replaceChildren(el('p', { class: 'muted' }, r.status === 401 ? 'Dead letters need the token (401).' : `${r.status}: ${(r.body && r.body.error) || ''}`));
      return;
    }
    const dead = r.body.dead_letters;
    // Each with its event, as the log holds it.
    const events = await Promise.all(dead.map((d) => api('GET', `/events?after=${d.position - 1}&limit=1`)));
    deadOut.replaceChildren(dead.length === 0
      ? el('p', { class: 'muted', id: 'no-dead-letters' }, 'No dead letters.')
      : el('div', {}, dead.map((d, i) => el('div', { class: 'card dead-letter', 'data-position': d.position },
        el('div', {}, el('strong', {}, `position ${d.position}`), ` · ${d.stream_id} v${d.stream_version} · ${d.type} · ${d.attempts} attempt(s) · build ${short(d.plugin_hash)} · ${time(d.recorded_at)}`),
        el('div', { class: 'bad' }, d.error),
        events[i].status === 200 && events[i].body.events[0] ? el('pre', {}, pretty(events[i].body.events[0].data)) : null))));
  };
  const retry = writeButton('Retry dead letters', { id: 'retry', class: 'secondary' }, async () => {
    const r = await api('POST', `${path}/dead-letters/retry`, {});
    if (r.status >= 400 || r.status === 0) return failed('retry', r);
    flash('');
    setTimeout(() => { loadDead(); showStatus(); }, 500);
  });

  main.append(
    el('h1', {}, el('a', { href: '#/projections' }, 'Projections'), ' / ', name),
    status, actions, verifyOut,
    el('h2', {}, 'Rows'),
    el('div', { class: 'row' }, tableSelect, 'order by', orderBy, order, 'limit', limit,
      el('button', { id: 'rows-load', onclick: () => loadRows(0) }, 'Load rows')),
    filters, rowsOut,
    el('h2', {}, 'SQL (read-only)'),
    sql, el('div', { class: 'row' }, el('button', { id: 'sql-run', onclick: runSql }, 'Run')), sqlOut,
    el('h2', {}, 'Dead letters'), el('div', { class: 'row' }, retry, el('button', { class: 'secondary', id: 'dead-reload', onclick: loadDead }, 'Reload')), deadOut,
  );
  await showStatus();
  await loadDead();
  every(1000, async () => {
    await showStatus();
    const count = Number($('#dead-letter-count')?.textContent ?? 0);
    const shown = deadOut.querySelectorAll('.dead-letter').length;
    if (count !== shown) loadDead();
  });
}

/** A row's value as text (blobs come as hex strings, numbers as numbers). */
const cell = (v) => (v === null || v === undefined ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : String(v));

// ------------------------------------------------------ streams & events

function eventRow(e, detail) {
  return el('tr', { class: 'clickable', 'data-position': e.position, onclick: () => showEvent(detail, e) },
    el('td', { class: 'num' }, e.position), el('td', {}, e.stream_id), el('td', { class: 'num' }, e.stream_version),
    el('td', {}, e.type), el('td', { class: 'num' }, e.schema_version), el('td', { class: 'mono' }, time(e.recorded_at)));
}

function showEvent(detail, e) {
  detail.replaceChildren(el('div', { class: 'card' },
    el('strong', {}, `${e.type} at position ${e.position}`), ` · stream ${e.stream_id} version ${e.stream_version} · schema v${e.schema_version} · ${time(e.recorded_at)}`,
    el('h2', {}, 'data'), el('pre', { class: 'event-data' }, pretty(e.data)),
    el('h2', {}, 'metadata'), el('pre', { class: 'event-metadata' }, pretty(e.metadata))));
}

const EVENT_HEADERS = [{ label: 'position', num: true }, 'stream', { label: 'version', num: true }, 'type', { label: 'schema', num: true }, 'recorded'];

async function eventsPage(main) {
  const after = el('input', { id: 'after', type: 'number', min: 0, value: 0, size: 8 });
  const types = el('input', { id: 'types', placeholder: 'types: A,B', size: 18 });
  const streamId = el('input', { id: 'stream-id', placeholder: 'stream id', size: 22 });
  const upcast = el('input', { id: 'upcast', type: 'checkbox' });
  const list = el('div', { id: 'events' });
  const detail = el('div', { id: 'event-detail' });
  const show = (r, what, next) => {
    if (r.status !== 200) return failed(what, r);
    flash('');
    list.replaceChildren(table(EVENT_HEADERS, r.body.events.map((e) => eventRow(e, detail))),
      next ? el('div', { class: 'row' }, el('button', { class: 'secondary', id: 'events-next', onclick: next }, 'Next page')) : null);
  };
  const loadLog = async (from) => {
    const q = new URLSearchParams({ after: String(from), limit: '50' });
    if (types.value) q.set('types', types.value);
    if (upcast.checked) q.set('upcast', 'true');
    const r = await api('GET', `/events?${q}`);
    show(r, 'events', r.body && r.body.next_after != null ? () => { after.value = r.body.next_after; loadLog(r.body.next_after); } : null);
  };
  const loadStream = async (from) => {
    const q = new URLSearchParams({ from_version: String(from), limit: '50' });
    if (upcast.checked) q.set('upcast', 'true');
    const r = await api('GET', `/streams/${encodeURIComponent(streamId.value)}?${q}`);
    show(r, `stream ${streamId.value}`, r.body && r.body.next_from_version != null ? () => loadStream(r.body.next_from_version) : null);
  };

  // The live tail: the SSE stream read with fetch, so the token can go in
  // a header.
  const tailBody = el('tbody');
  const tailState = el('span', { class: 'muted', id: 'tail-state' }, 'stopped');
  let controller = null;
  const stopTail = () => { if (controller) controller.abort(); controller = null; tailState.textContent = 'stopped'; };
  cleanups.push(stopTail);
  const startTail = async () => {
    stopTail();
    const head = await api('GET', '/events?limit=1');
    const from = head.status === 200 ? head.body.head : 0;
    controller = new AbortController();
    const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
    let res;
    try {
      res = await fetch(`/subscribe?after=${from}`, { headers, signal: controller.signal });
    } catch (e) {
      return;
    }
    if (!res.ok) { failed('live tail', { status: res.status, body: await res.json().catch(() => null) }); return; }
    tailState.textContent = `following from position ${from}`;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      let chunk;
      try { chunk = await reader.read(); } catch { break; }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        const kind = (block.split('\n').find((l) => l.startsWith('event:')) || '').slice(6).trim();
        if (!data || kind === 'caught-up' || kind === 'fell-behind') continue;
        try {
          const e = JSON.parse(data);
          tailBody.prepend(eventRow(e, detail));
          while (tailBody.children.length > 200) tailBody.lastChild.remove();
        } catch { /* not an event */ }
      }
    }
  };

  main.append(
    el('h1', {}, 'Streams and events'),
    el('div', { class: 'row' }, 'The log after position', after, types, el('button', { id: 'log-load', onclick: () => loadLog(Number(after.value) || 0) }, 'Load')),
    el('div', { class: 'row' }, 'One stream', streamId, el('button', { id: 'stream-load', onclick: () => loadStream(1) }, 'Load'),
      el('label', {}, upcast, ' show upcast to the newest version')),
    list, detail,
    el('h2', {}, 'Live tail'),
    el('div', { class: 'row' }, el('button', { id: 'tail-start', onclick: startTail }, 'Start'), el('button', { id: 'tail-stop', class: 'secondary', onclick: stopTail }, 'Stop'), tailState),
    el('table', { id: 'tail' }, el('thead', {}, el('tr', {}, EVENT_HEADERS.map((h) => el('th', {}, h.label ?? h)))), tailBody),
  );
  await loadLog(0);
}

// --------------------------------------------------------------- handlers

async function handlersPage(main) {
  const r = await api('GET', '/handlers');
  if (r.status !== 200) return failed('handlers', r);
  const handlers = r.body.handlers;
  const handler = el('select', { id: 'cmd-handler' }, handlers.map((h) => el('option', { value: h.name }, h.name)));
  const type = el('select', { id: 'cmd-type' });
  const pickHandler = () => {
    const h = handlers.find((x) => x.name === handler.value);
    type.replaceChildren(...(h ? h.command_types : []).map((t) => el('option', { value: t }, t)));
  };
  handler.addEventListener('change', pickHandler);
  pickHandler();
  const stream = el('input', { id: 'cmd-stream', placeholder: 'stream id', size: 24 });
  const data = el('textarea', { id: 'cmd-data', spellcheck: 'false' }, '{}');
  const out = el('div', { id: 'cmd-result' });
  const send = writeButton('Send', { id: 'cmd-send' }, async () => {
    let parsed;
    try {
      parsed = JSON.parse(data.value);
    } catch (e) {
      out.replaceChildren(el('p', { class: 'bad' }, `the data is not JSON: ${e.message}`));
      return;
    }
    const res = await api('POST', `/commands/${encodeURIComponent(handler.value)}`, { type: type.value, stream_id: stream.value, data: parsed });
    if (res.status === 200) {
      const c = res.body;
      wrote(c.last_position);
      out.replaceChildren(el('div', { class: 'card' },
        el('strong', { class: 'ok', id: 'cmd-ok' }, c.duplicate ? 'duplicate: nothing new written' : `accepted: ${c.events.length} event(s), stream at version ${c.stream_version}`),
        c.events.map((e) => el('div', {}, el('div', {}, `${e.type} at position ${e.position}`), el('pre', {}, pretty(e.data))))));
    } else if (res.status === 422 && res.body && res.body.code) {
      out.replaceChildren(el('div', { class: 'card' }, el('strong', { class: 'bad', id: 'cmd-rejected' }, `rejected: ${res.body.code}`), el('div', {}, res.body.error)));
    } else {
      out.replaceChildren(el('p', { class: 'bad', id: 'cmd-error' }, `${res.status}: ${(res.body && res.body.error) || ''}`));
      if (res.status === 401) failed('command', res);
    }
  });
  main.append(
    el('h1', {}, 'Command handlers'),
    table(['name', 'version', 'command types', 'build', 'file'],
      handlers.map((h) => el('tr', {}, el('td', {}, h.name), el('td', {}, h.version), el('td', {}, h.command_types.join(', ')), el('td', { class: 'mono' }, short(h.hash)), el('td', { class: 'mono' }, h.file)))),
    el('h2', {}, 'Send a command'),
    el('div', { class: 'row' }, handler, type, stream),
    data, el('div', { class: 'row' }, send), out,
  );
}

// ---------------------------------------------------------------- plugins

async function pluginsPage(main) {
  const [p, h, u, s] = await Promise.all([api('GET', '/projections'), api('GET', '/handlers'), api('GET', '/upcasters'), api('GET', '/schemas')]);
  for (const [what, r] of [['projections', p], ['handlers', h], ['upcasters', u], ['schemas', s]]) if (r.status !== 200) return failed(what, r);
  const rows = [
    ...p.body.projections.map((x) => x.status === 'invalid'
      ? [x.name, 'invalid file', '', 'invalid', '', x.file, x.error]
      : [x.name, x.kind, x.version, x.status, x.hash, x.file, x.error ? x.error.message : '']),
    ...h.body.handlers.map((x) => [x.name, 'command handler', x.version, 'loaded', x.hash, x.file, '']),
    ...u.body.upcasters.map((x) => [x.name, `upcaster ${x.event_type} v${x.from_version} → v${x.to_version}`, x.version, 'loaded', x.hash, x.file, '']),
  ];
  main.append(
    el('h1', {}, 'Plugins'),
    table(['name', 'kind', 'version', 'status', 'hash', 'file', 'error'],
      rows.map(([name, kind, version, status, hash, file, error]) => el('tr', { 'data-name': name },
        el('td', {}, name), el('td', {}, kind), el('td', {}, version), statusCell(status), el('td', { class: 'mono' }, short(hash)), el('td', { class: 'mono' }, file), el('td', { class: 'bad' }, error))),
      { id: 'plugins' }),
    el('h2', {}, 'Event schemas'),
    table(['event type', 'version', 'newest', 'file'],
      s.body.schemas.map((x) => el('tr', {}, el('td', {}, x.event_type), el('td', {}, x.version), el('td', {}, x.newest ? 'yes' : ''), el('td', { class: 'mono' }, x.file))),
      { id: 'schemas' }),
  );
}

// ----------------------------------------------------------------- router

const PAGES = { projections: projectionsPage, projection: projectionPage, events: eventsPage, handlers: handlersPage, plugins: pluginsPage };
let shown = 0;

async function render() {
  for (const c of cleanups) c();
  cleanups = [];
  flash('');
  authNote();
  const [, page = 'projections', arg] = location.hash.split('/');
  const key = PAGES[page] ? page : 'projections';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === `nav-${key === 'projection' ? 'projections' : key}`);
  const main = el('main', { id: 'page', 'data-page': key });
  $('#page').replaceWith(main);
  const mine = ++shown;
  await PAGES[key](main, arg ? decodeURIComponent(arg) : undefined);
  if (mine === shown) main.setAttribute('data-ready', 'true');
}

async function start() {
  const r = await api('GET', '/ui/info.json');
  if (r.status === 200) info = r.body;
  const input = $('#token');
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = '';
    render();
  });
  $('#token-forget').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); render(); });
  window.addEventListener('hashchange', render);
  await render();
}

start();
