// SPDX-License-Identifier: Apache-2.0
/* app.js — the Nex dashboard: a small single-page app over nexd's REST API and websockets.
 *
 * Views (by URL hash): #/ overview, #/workloads, #/workloads/<id>, #/deploy, #/events, #/cluster.  Data comes from the REST
 * API; changes arrive on the events websocket (/v1/events?follow=1) — there are no polling loops.  Log tails use
 * /v1/workloads/<id>/logs?follow=1, the exec terminal /v1/workloads/<id>/exec (interactive over a websocket
 * when the node offers it, otherwise one command at a time over POST).
 *
 * Everything shown comes from workloads and the network, so it is hostile: the DOM is built with
 * textContent/attributes only (the h() helper), never innerHTML with data. */
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const main = $('#main');
  const STATES = ['pending', 'starting', 'running', 'paused', 'exited', 'failed', 'stopped'];
  const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

  const state = {
    token: sessionStorage.getItem('nex.token') || '',
    node: null,
    workloads: new Map(), // id -> workload
    events: [],           // newest last, bounded
    samples: [],          // {t, running, total} for the overview chart
    live: false,
    view: null,           // {name, id, cleanup}
  };

  // --- DOM ------------------------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const badge = (s) => h('span', { class: `badge ${s}` }, s);
  function ago(iso) {
    if (!iso) return '—';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.floor(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h`;
    return `${Math.floor(s / 86400)}d`;
  }
  function banner(text) {
    const b = $('#banner');
    b.textContent = text || '';
    b.hidden = !text;
  }

  // --- API ------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, body, raw) {
    for (let attempt = 0; ; attempt++) {
      const headers = {};
      if (state.token) headers.Authorization = `Bearer ${state.token}`;
      if (body !== undefined && !raw) headers['Content-Type'] = 'application/json';
      const r = await fetch(path, { method, headers, body: raw ? body : body === undefined ? undefined : JSON.stringify(body) });
      if (r.status === 401) {
        await askToken(attempt > 0 ? 'That token was not accepted.' : '');
        continue;
      }
      const text = await r.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
      if (!r.ok) throw new ApiError(r.status, data);
      return data;
    }
    throw new ApiError(401, { detail: 'no valid token' });
  }

  function askToken(error) {
    const dlg = $('#token-dialog');
    $('#token-error').textContent = error || '';
    return new Promise((resolve) => {
      dlg.addEventListener('close', () => {
        state.token = $('#token-input').value.trim();
        sessionStorage.setItem('nex.token', state.token);
        resolve();
      }, { once: true });
      if (!dlg.open) dlg.showModal();
      $('#token-input').focus();
    });
  }

  function confirmAction(text) {
    const dlg = $('#confirm-dialog');
    $('#confirm-text').textContent = text;
    return new Promise((resolve) => {
      dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
      dlg.returnValue = '';
      dlg.showModal();
      $('#confirm-ok').focus();
    });
  }

  function wsUrl(path) {
    const u = new URL(path, location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (state.token) u.searchParams.set('access_token', state.token); // browsers cannot set headers on websockets
    return u.toString();
  }

  // --- live data ------------------------------------------------------------------------------------------
  let eventsSocket = null;
  let backoff = 1000;
  const listeners = new Set(); // functions called with each event

  function setLive(on, text) {
    state.live = on;
    const el = $('#live');
    el.className = `live ${on ? 'on' : 'off'}`;
    el.textContent = text;
  }

  function connectEvents() {
    const ws = new WebSocket(wsUrl('/v1/events?follow=1'));
    eventsSocket = ws;
    ws.onopen = () => {
      backoff = 1000;
      setLive(true, 'live');
      banner('');
      refreshAll(); // catch up on what happened while disconnected
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (_) { return; }
      if (!ev || typeof ev.type !== 'string') return;
      onEvent(ev);
    };
    ws.onclose = () => {
      if (eventsSocket !== ws) return;
      const wait = backoff;
      backoff = Math.min(backoff * 2, 30000);
      setLive(false, 'offline');
      banner(`Live updates disconnected — reconnecting in ${Math.round(wait / 1000)} s`);
      setTimeout(connectEvents, wait);
    };
  }

  async function onEvent(ev) {
    state.events.push(ev);
    if (state.events.length > 500) state.events.shift();
    const id = ev.subject || (ev.data && ev.data.workload_id);
    if (id && String(ev.type).startsWith('workload_')) {
      try {
        state.workloads.set(id, await api('GET', `/v1/workloads/${encodeURIComponent(id)}`));
      } catch (_) { /* gone or forbidden: keep what we had */ }
    }
    await refreshNode();
    for (const fn of listeners) fn(ev);
  }

  function showCaller(c) {
    const el = $('#scope');
    if (!el || !c) return;
    el.hidden = false;
    el.textContent = c.token_id ? `token ${c.token_id} · ${c.scopes.join(', ')}${c.namespaces ? ` · ${c.namespaces.join(', ')}` : ''}`
      : `anonymous · ${c.scopes.join(', ') || 'no scopes'}`;
  }

  async function refreshNode() {
    try {
      state.node = await api('GET', '/v1/node');
      const w = state.node.workloads || {};
      const host = state.node.host || {};
      const used = host.memory_total_bytes && host.memory_available_bytes ? host.memory_total_bytes - host.memory_available_bytes : 0;
      state.samples.push({ t: Date.now(), running: w.running || 0, total: w.total || 0, memUsed: used, load: (host.load || [0])[0] });
      showCaller(state.node.caller);
      if (state.samples.length > 120) state.samples.shift();
    } catch (e) {
      banner(`Cannot reach the node: ${e.message}`);
    }
  }

  async function refreshWorkloads() {
    const list = await api('GET', '/v1/workloads');
    state.workloads = new Map(list.workloads.map((w) => [w.id, w]));
  }

  async function refreshAll() {
    await Promise.all([refreshNode(), refreshWorkloads().catch(() => {})]);
    for (const fn of listeners) fn(null);
  }

  // --- views ----------------------------------------------------------------------------------------------
  function bytes(n) {
    if (n === null || n === undefined) return '?';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function memoryText(m) {
    if (!m) return '—';
    return `${bytes(m.current_bytes)} now, ${bytes(m.peak_bytes)} peak, limit ${m.limit_bytes ? bytes(m.limit_bytes) : 'none'}`;
  }

  function sparkline(values, label) {
    const w = 240, hgt = 48, max = Math.max(1, ...values);
    const step = values.length > 1 ? w / (values.length - 1) : w;
    const d = values.map((v, i) => `${i ? 'L' : 'M'}${(i * step).toFixed(1)},${(hgt - 4 - (v / max) * (hgt - 8)).toFixed(1)}`).join(' ');
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
    svg.setAttribute('class', 'spark');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    path.setAttribute('d', d || `M0,${hgt - 4} L${w},${hgt - 4}`);
    svg.append(path);
    return svg;
  }

  function viewOverview() {
    const root = h('div', {});
    const render = () => {
      const n = state.node;
      if (!n) { root.replaceChildren(h('p', {}, 'Loading…')); return; }
      const counts = n.workloads || {};
      const host = n.host || {};
      const accel = (d) => (d.accel ? `; ${d.accel}${d.kvm_reason ? ` (KVM: ${d.kvm_reason})` : ''}` : '');
      const drivers = (n.drivers || []).map((d) => h('li', {}, `${d.name}: `, d.available ? 'available' : `unavailable (${d.reason})`, accel(d)));
      const nats = n.nats ? (n.nats.connected ? `connected to ${n.nats.url || 'NATS'}` : 'disconnected') : 'not configured';
      root.replaceChildren(
        h('h1', {}, 'Node ', h('span', { class: 'mono' }, n.name)),
        h('div', { class: 'grid' },
          h('section', { class: 'card', 'aria-labelledby': 'node-h' },
            h('h2', { id: 'node-h' }, 'Node'),
            h('dl', { class: 'kv' },
              h('dt', {}, 'ID'), h('dd', { class: 'mono', 'data-testid': 'node-id' }, n.id),
              h('dt', {}, 'Version'), h('dd', {}, n.version),
              h('dt', {}, 'Up for'), h('dd', {}, ago(n.started_at)),
              h('dt', {}, 'Default driver'), h('dd', {}, n.default_driver),
              h('dt', {}, 'NATS'), h('dd', {}, nats)),
            h('h2', { style: 'margin-top:12px' }, 'Drivers'), h('ul', {}, drivers)),
          h('section', { class: 'card', 'aria-labelledby': 'wl-h' },
            h('h2', { id: 'wl-h' }, 'Workloads'),
            h('div', { class: 'stat', 'data-testid': 'total' }, counts.total || 0),
            h('dl', { class: 'kv' }, STATES.flatMap((s) => [h('dt', {}, badge(s)), h('dd', {}, counts[s] || 0)]))),
          h('section', { class: 'card', 'aria-labelledby': 'host-h' },
            h('h2', { id: 'host-h' }, 'Host'),
            h('dl', { class: 'kv' },
              h('dt', {}, 'CPUs'), h('dd', { 'data-testid': 'cpus' }, String(host.cpus ?? '?')),
              h('dt', {}, 'Load'), h('dd', {}, host.load ? host.load.map((x) => x.toFixed(2)).join(' ') : '—'),
              h('dt', {}, 'Memory'), h('dd', { 'data-testid': 'host-memory' }, host.memory_total_bytes
                ? `${bytes(host.memory_total_bytes - host.memory_available_bytes)} used of ${bytes(host.memory_total_bytes)}` : '—'))),
          h('section', { class: 'card', 'aria-labelledby': 'chart-h' },
            h('h2', { id: 'chart-h' }, 'Running workloads'),
            sparkline(state.samples.map((s) => s.running), 'running workloads over the last minutes'),
            h('h2', { style: 'margin-top:12px' }, 'Memory used'),
            sparkline(state.samples.map((s) => s.memUsed), 'host memory used over the last minutes'),
            h('p', { class: 'hint' }, 'Workload counts update live; host figures every 10 s.'))));
    };
    render();
    // Host figures change without events: sample them while this view is open (the table never polls).
    const timer = setInterval(async () => { await refreshNode(); render(); }, 10000);
    return { root, onEvent: render, cleanup: () => clearInterval(timer) };
  }

  function viewWorkloads() {
    const q = h('input', { type: 'search', placeholder: 'Search name, id, namespace', 'aria-label': 'Search workloads' });
    const fs = h('select', { 'aria-label': 'Filter by state' }, h('option', { value: '' }, 'All states'), STATES.map((s) => h('option', { value: s }, s)));
    const fns = h('select', { 'aria-label': 'Filter by namespace' }, h('option', { value: '' }, 'All namespaces'));
    const tbody = h('tbody', {});
    const root = h('div', {},
      h('h1', {}, 'Workloads'),
      h('div', { class: 'toolbar' }, q, fs, fns, h('a', { href: '#/deploy' }, 'Deploy a workload')),
      h('div', { class: 'table-wrap' },
        h('table', { 'aria-label': 'Workloads' },
          h('thead', {}, h('tr', {}, ['Name', 'Namespace', 'State', 'Age', 'Restarts', 'CPU', 'Memory', 'Exit'].map((t, i) => h('th', { scope: 'col', class: i >= 4 && i <= 6 ? 'hide-small' : null }, t)))),
          tbody)));
    const render = () => {
      const nss = [...new Set([...state.workloads.values()].map((w) => w.namespace))].sort();
      const cur = fns.value;
      fns.replaceChildren(h('option', { value: '' }, 'All namespaces'), nss.map((n) => h('option', { value: n }, n)));
      fns.value = nss.includes(cur) ? cur : '';
      const text = q.value.trim().toLowerCase();
      const rows = [...state.workloads.values()]
        .filter((w) => !fs.value || w.state === fs.value)
        .filter((w) => !fns.value || w.namespace === fns.value)
        .filter((w) => !text || `${w.name} ${w.id} ${w.namespace}`.toLowerCase().includes(text))
        .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
      tbody.replaceChildren(...rows.map((w) => h('tr', { 'data-id': w.id },
        h('td', {}, h('a', { href: `#/workloads/${w.id}` }, w.name)),
        h('td', {}, w.namespace),
        h('td', {}, badge(w.state)),
        h('td', {}, ago(w.created_at)),
        h('td', { class: 'hide-small' }, w.restarts ?? 0),
        h('td', { class: 'hide-small', 'data-col': 'cpu' }, usage(w, (st) => st.cpu && st.cpu.usage_ns !== null ? `${(st.cpu.usage_ns / 1e9).toFixed(1)} s` : '—')),
        h('td', { class: 'hide-small', 'data-col': 'memory' }, usage(w, (st) => st.memory ? bytes(st.memory.current_bytes) : '—')),
        h('td', {}, w.exit_code !== null && w.exit_code !== undefined ? `code ${w.exit_code}` : w.exit_signal ? `signal ${w.exit_signal}` : '—'))));
      if (!rows.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No workloads match.')));
    };
    // CPU and memory of running workloads: their stats, fetched when an event (or a view change) redraws the table.
    const stats = new Map();
    const usage = (w, fmt) => (w.state === 'running' && stats.has(w.id) ? fmt(stats.get(w.id)) : '—');
    const refreshStats = async () => {
      const running = [...state.workloads.values()].filter((w) => w.state === 'running').slice(0, 50);
      await Promise.all(running.map(async (w) => {
        try { stats.set(w.id, await api('GET', `/v1/workloads/${encodeURIComponent(w.id)}/stats`)); } catch (_) { stats.delete(w.id); }
      }));
      render();
    };
    for (const el of [q, fs, fns]) el.addEventListener('input', render);
    render();
    refreshStats();
    return { root, onEvent: () => { render(); refreshStats(); } };
  }

  function viewDetail(id) {
    const root = h('div', {}, h('p', {}, 'Loading…'));
    const logBox = h('pre', { class: 'logs', tabindex: '0', 'aria-label': 'Log lines', 'aria-live': 'off', 'data-testid': 'logs' });
    const search = h('input', { type: 'search', placeholder: 'Search logs', 'aria-label': 'Search logs' });
    const pauseBtn = h('button', { type: 'button' }, 'Pause');
    const lines = [];
    const termHost = h('div', { class: 'terminal', 'data-testid': 'terminal' });
    let paused = false, missed = 0, logSocket = null, closed = false, ended = false, term = null, execSocket = null;

    const lineEl = (l) => {
      const text = l.text ?? '';
      const needle = search.value;
      const t = h('span', { class: 'text' });
      if (needle && text.toLowerCase().includes(needle.toLowerCase())) {
        const i = text.toLowerCase().indexOf(needle.toLowerCase());
        t.append(text.slice(0, i), h('mark', {}, text.slice(i, i + needle.length)), text.slice(i + needle.length));
      } else t.textContent = text;
      return h('span', { class: `line ${l.stream}`, 'data-stream': l.stream }, h('span', { class: 'ts' }, (l.ts || '').slice(11, 23)), t);
    };
    const renderLogs = () => {
      const shown = search.value ? lines.filter((l) => (l.text || '').toLowerCase().includes(search.value.toLowerCase())) : lines;
      logBox.replaceChildren(...shown.slice(-2000).map(lineEl));
      logBox.scrollTop = logBox.scrollHeight;
    };
    const addLine = (l) => {
      if (lines.length && l.seq && lines[lines.length - 1].seq >= l.seq) return; // replayed
      lines.push(l);
      if (lines.length > 5000) lines.shift();
      if (paused) { missed++; pauseBtn.textContent = `Resume (${missed} new)`; return; }
      if (!search.value || (l.text || '').toLowerCase().includes(search.value.toLowerCase())) {
        logBox.append(lineEl(l));
        logBox.scrollTop = logBox.scrollHeight;
      }
    };
    pauseBtn.addEventListener('click', () => {
      paused = !paused;
      pauseBtn.textContent = paused ? 'Resume' : 'Pause';
      if (!paused) { missed = 0; renderLogs(); }
    });
    search.addEventListener('input', renderLogs);
    const download = () => {
      const blob = new Blob(lines.map((l) => `${l.ts} ${l.stream} ${l.text}\n`), { type: 'text/plain' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `${id}.log` });
      document.body.append(a); a.click(); a.remove();
    };

    const followLogs = (after) => {
      if (closed) return;
      const ws = new WebSocket(wsUrl(`/v1/workloads/${encodeURIComponent(id)}/logs?follow=1&tail=${after ? 0 : 500}`));
      logSocket = ws;
      ws.onmessage = (m) => {
        let msg; try { msg = JSON.parse(m.data); } catch (_) { return; }
        if (msg && typeof msg.text === 'string') addLine(msg);
        else if (msg && msg.notice === 'missed') addLine({ stream: 'stderr', ts: new Date().toISOString(), text: `[${msg.count} lines skipped: this page read too slowly]` });
        else if (msg && msg.notice === 'end') { ended = true; addLine({ stream: 'stderr', ts: new Date().toISOString(), text: '[the workload ended]' }); }
      };
      ws.onclose = () => { if (!closed && !ended && logSocket === ws) setTimeout(() => followLogs(true), 2000); };
    };

    const startTerminal = async (host, w) => {
      if (!window.Terminal) { host.replaceChildren(h('p', { class: 'muted' }, 'Terminal library not available.')); return; }
      // A workload that ran only for a moment may have ended since the page read it: asked again just before the
      // session opens, so that a short-lived workload gets a sentence, not a refused websocket.
      term = true;
      try {
        const now = await api('GET', `/v1/workloads/${encodeURIComponent(id)}`);
        if (closed) { term = null; return; } // the page was left meanwhile
        if (now.state !== 'running') {
          term = null;
          host.replaceChildren(h('p', { class: 'muted' }, 'The workload is not running.'));
          return;
        }
      } catch (_) { term = null; return; }
      // Colours with at least 4.5:1 contrast on the black background (xterm's default red has 3.6:1).
      term = new window.Terminal({ convertEol: false, fontSize: 13, cursorBlink: true,
        theme: { background: '#000000', foreground: '#e6edf3', red: '#ff6b6b', brightRed: '#ff8f8f', blue: '#6ea8fe', brightBlue: '#9ec5fe' } });
      const fit = window.FitAddon ? new window.FitAddon.FitAddon() : null;
      if (fit) term.loadAddon(fit);
      term.open(host);
      if (fit) try { fit.fit(); } catch (_) { /* not visible yet */ }
      // An interactive session on a terminal inside the sandbox (the exec websocket): the workload's own program
      // started again under the name it was given (argv[0]), so a busybox workload started as `sh` gives a shell.
      const u = new URL(`/v1/workloads/${encodeURIComponent(id)}/exec`, location.href);
      u.searchParams.set('tty', '1');
      // An image has no /workload: its shell is looked up in the image's PATH (exec -it web sh).
      u.searchParams.set('cmd', w.image ? 'sh' : '/workload');
      if (!w.image && w.argv && w.argv.length) u.searchParams.set('argv0', w.argv[0]);
      u.searchParams.set('rows', String(term.rows));
      u.searchParams.set('cols', String(term.cols));
      const ws = new WebSocket(wsUrl(u.pathname + u.search));
      ws.binaryType = 'arraybuffer';
      execSocket = ws;
      let done = false;
      ws.onopen = () => {
        term.onData((d) => ws.readyState === 1 && ws.send(new TextEncoder().encode(d)));
        term.onResize(({ cols, rows }) => ws.readyState === 1 && ws.send(JSON.stringify({ type: 'resize', rows, cols })));
        term.focus();
      };
      ws.onmessage = (m) => {
        if (typeof m.data !== 'string') { term.write(new Uint8Array(m.data)); return; }
        let msg; try { msg = JSON.parse(m.data); } catch (_) { return; }
        if (msg.type === 'exit') {
          done = true;
          term.write(`\r\n[exited${msg.exit_code !== null ? ` with code ${msg.exit_code}` : ''}${msg.signal ? ` by signal ${msg.signal}` : ''}]\r\n`);
        } else if (msg.type === 'error') {
          term.write(`\r\n\x1b[31m${msg.message}\x1b[0m\r\n`);
        }
      };
      ws.onclose = (e) => {
        if (!done && !closed) term.write(`\r\n[session closed${e.code && e.code !== 1000 ? ` (${e.code})` : ''}]\r\n`);
      };
    };

    // An image workload that is starting shows its pull as a bar, moved by the image_pull_* events.
    const pullBar = h('progress', { 'data-testid': 'pull-progress', max: '1', value: '0', 'aria-label': 'Image pull progress' });
    const pullText = h('span', { class: 'muted' }, ' waiting for the registry');
    let pulling = false;
    const render = async () => {
      let w;
      try {
        w = await api('GET', `/v1/workloads/${encodeURIComponent(id)}`);
      } catch (e) {
        root.replaceChildren(h('h1', {}, 'Workload'), h('p', { role: 'alert' }, e.message));
        return;
      }
      state.workloads.set(w.id, w);
      let stats = null;
      try { stats = await api('GET', `/v1/workloads/${encodeURIComponent(id)}/stats`); } catch (_) { stats = null; }
      const live = !['exited', 'failed', 'stopped'].includes(w.state);
      pulling = !!w.image && !w.image_digest && ['pending', 'starting'].includes(w.state);
      const stop = h('button', { type: 'button', class: 'danger', disabled: !live, onclick: async () => {
        if (!(await confirmAction(`Stop ${w.name}? It gets SIGTERM, then SIGKILL after the grace period.`))) return;
        try { await api('DELETE', `/v1/workloads/${encodeURIComponent(id)}`); } catch (e) { banner(e.message); }
      } }, 'Stop');
      const sigSel = h('select', { 'aria-label': 'Signal to send' }, ['SIGHUP', 'SIGINT', 'SIGUSR1', 'SIGUSR2', 'SIGTERM', 'SIGKILL'].map((s) => h('option', {}, s)));
      const signal = h('button', { type: 'button', disabled: !live, onclick: async () => {
        if (!(await confirmAction(`Send ${sigSel.value} to ${w.name}?`))) return;
        try { await api('POST', `/v1/workloads/${encodeURIComponent(id)}/signal`, { signal: sigSel.value }); } catch (e) { banner(e.message); }
      } }, 'Send signal');
      // Pause freezes the workload's processes (cgroup freezer; a QEMU VM's vCPUs); the state follows as an event.
      const paused = w.state === 'paused';
      const pause = h('button', { type: 'button', 'data-testid': 'pause', disabled: !(w.state === 'running' || paused), onclick: async () => {
        try { await api('POST', `/v1/workloads/${encodeURIComponent(id)}/${paused ? 'resume' : 'pause'}`); } catch (e) { banner(e.message); }
      } }, paused ? 'Resume' : 'Pause');
      // A microVM's snapshot (its whole state to a file on the node); offered as a new workload at once.
      const vm = w.driver === 'qemu' || w.driver === 'firecracker';
      const snapshot = vm ? h('button', { type: 'button', 'data-testid': 'snapshot', disabled: !(w.state === 'running' || paused), onclick: async () => {
        try {
          const s = await api('POST', `/v1/workloads/${encodeURIComponent(id)}/snapshot`);
          const mib = (s.size_bytes / 1048576).toFixed(1);
          if (!(await confirmAction(`Snapshot ${s.id} written (${mib} MiB). Start a new workload from it now?`))) return;
          const n = await api('POST', '/v1/workloads', { from_snapshot: s.id, name: w.name });
          location.hash = `#/workloads/${n.id}`;
        } catch (e) { banner(e.message); }
      } }, 'Snapshot') : null;
      const redeploy = h('button', { type: 'button', onclick: async () => {
        if (!(await confirmAction(`Deploy ${w.name} again with the same spec?`))) return;
        const spec = w.image ? { name: w.name, namespace: w.namespace, image: w.image, env: w.env }
          : { name: w.name, namespace: w.namespace, artifact: w.artifact, argv: w.argv, env: w.env };
        for (const k of ['entrypoint', 'cmd', 'user', 'cwd']) if (w.image && w[k]) spec[k] = w[k];
        if (w.sha256) spec.sha256 = w.sha256;
        if (w.network && w.network !== 'none') spec.network = w.network;
        if (w.network === 'bridge') {
          // The same host ports once this one has ended; while it lives they are its own (a 409): any free one.
          spec.ports = (w.ports || []).map(({ host, workload, protocol, host_ip }) => ({ host: live ? 0 : host, workload, protocol, host_ip }));
          if (w.egress) spec.egress = { allow: w.egress.allow || [], deny: w.egress.deny || [] };
          if (w.nats) spec.nats = true;
        }
        try { const n = await api('POST', '/v1/workloads', spec); location.hash = `#/workloads/${n.id}`; } catch (e) { banner(e.message); }
      } }, 'Restart (redeploy)');
      // Network bridge: the workload's address, published ports (tcp ones on loopback or every address as links:
      // the dashboard's host is one of them) and its egress policy.
      const portEl = (p) => {
        const text = `${p.host_ip}:${p.host} → ${p.workload}/${p.protocol}`;
        if (p.protocol !== 'tcp' || !['127.0.0.1', '0.0.0.0'].includes(p.host_ip)) return h('li', {}, text);
        const host = p.host_ip === '0.0.0.0' ? location.hostname : p.host_ip;
        return h('li', {}, h('a', { href: `http://${host.includes(':') ? `[${host}]` : host}:${p.host}/`, target: '_blank', rel: 'noopener' }, text));
      };
      const eg = w.egress || {};
      const egressText = [eg.allow && eg.allow.length ? `allow ${eg.allow.join(', ')}` : null,
        eg.deny && eg.deny.length ? `deny ${eg.deny.join(', ')}` : null, `otherwise ${eg.default || 'allow'}`].filter(Boolean).join('; ');
      const network = w.network === 'bridge' ? [
        h('dt', {}, 'Network'), h('dd', {}, 'bridge', w.nats ? ' (NATS)' : ''),
        h('dt', {}, 'Address'), h('dd', { class: 'mono', 'data-testid': 'address' }, w.address || '—'),
        h('dt', {}, 'Ports'), h('dd', { 'data-testid': 'ports' }, w.ports && w.ports.length ? h('ul', { style: 'margin:0;padding-left:1.2em' }, w.ports.map(portEl)) : '—'),
        h('dt', {}, 'Egress'), h('dd', { class: 'mono', 'data-testid': 'egress' }, egressText),
      ] : [h('dt', {}, 'Network'), h('dd', {}, w.network || 'none')];
      const exitText = w.exit_code !== null && w.exit_code !== undefined ? `exit code ${w.exit_code}` : w.exit_signal ? `signal ${w.exit_signal}` : '—';
      root.replaceChildren(
        h('h1', {}, w.name, ' ', badge(w.state)),
        h('div', { class: 'toolbar' }, stop, pause, snapshot, sigSel, signal, redeploy),
        h('div', { class: 'grid' },
          h('section', { class: 'card', 'aria-labelledby': 'spec-h' }, h('h2', { id: 'spec-h' }, 'Spec'),
            h('dl', { class: 'kv' },
              h('dt', {}, 'ID'), h('dd', { class: 'mono' }, w.id),
              h('dt', {}, 'Namespace'), h('dd', {}, w.namespace),
              h('dt', {}, w.image ? 'Image' : 'Artifact'), h('dd', { class: 'mono', 'data-testid': 'image' }, w.image || w.artifact),
              h('dt', {}, 'Digest'), h('dd', { class: 'mono' }, w.image_digest || w.digest || '—'),
              h('dt', {}, 'Argv'), h('dd', { class: 'mono' }, JSON.stringify(w.argv)),
              h('dt', {}, 'Env'), h('dd', { class: 'mono' }, Object.keys(w.env || {}).join(', ') || '—'),
              h('dt', {}, 'Driver'), h('dd', {}, w.driver),
              network)),
          h('section', { class: 'card', 'aria-labelledby': 'state-h' }, h('h2', { id: 'state-h' }, 'State'),
            h('dl', { class: 'kv' },
              h('dt', {}, 'State'), h('dd', { 'data-testid': 'state' }, w.state),
              h('dt', {}, 'Exit'), h('dd', {}, exitText),
              h('dt', {}, 'Reason'), h('dd', {}, w.reason || '—'),
              pulling ? [h('dt', {}, 'Image pull'), h('dd', {}, pullBar, pullText)] : null,
              h('dt', {}, 'Log lines'), h('dd', {}, `${w.logs.lines} (${w.logs.dropped} dropped)`),
              stats ? [h('dt', {}, 'Memory'), h('dd', { 'data-testid': 'memory' }, memoryText(stats.memory)),
                h('dt', {}, 'CPU time'), h('dd', {}, stats.cpu && stats.cpu.usage_ns !== null ? `${(stats.cpu.usage_ns / 1e9).toFixed(2)} s` : '—'),
                h('dt', {}, 'Processes'), h('dd', {}, stats.pids ? `${stats.pids.current ?? '?'} of ${stats.pids.limit ?? 'unlimited'}` : '—'),
                h('dt', {}, 'Restarts'), h('dd', {}, String(w.restarts ?? 0))] : null),
            h('ol', { class: 'events', 'aria-label': 'State history' }, (w.history || []).map((s) => h('li', {}, badge(s.state), ' ', s.at, s.reason ? ` — ${s.reason}` : ''))))),
        h('section', { class: 'card', style: 'margin-top:12px', 'aria-labelledby': 'logs-h' },
          h('h2', { id: 'logs-h' }, 'Logs'),
          h('div', { class: 'toolbar' }, search, pauseBtn, h('button', { type: 'button', onclick: download }, 'Download')),
          logBox),
        h('section', { class: 'card', style: 'margin-top:12px', 'aria-labelledby': 'term-h' },
          h('h2', { id: 'term-h' }, 'Terminal'),
          w.state === 'running' ? termHost
            : h('p', { class: 'muted' }, live ? 'The terminal opens once the workload runs.' : 'The workload is not running.')));
      // Exec needs a running workload: a page opened while it starts gets its terminal with the event that says so.
      if (w.state === 'running' && !term) startTerminal(termHost, w);
      renderLogs();
    };

    (async () => {
      try {
        const r = await api('GET', `/v1/workloads/${encodeURIComponent(id)}/logs?tail=500`);
        r.lines.forEach(addLine);
      } catch (_) { /* shown by render */ }
      await render();
      followLogs(false);
    })();
    return {
      root,
      onEvent: (ev) => {
        if (ev && pulling && ev.type === 'image_pull_progress' && ev.data && ev.data.bytes_total) {
          pullBar.value = ev.data.bytes_done / ev.data.bytes_total;
          pullText.textContent = ` ${bytes(ev.data.bytes_done)} of ${bytes(ev.data.bytes_total)}`;
          return;
        }
        if (!ev || ev.subject === id || (ev.data && ev.data.workload_id === id) || (pulling && /^image_pull_/.test(ev.type))) render();
      },
      cleanup: () => { closed = true; if (logSocket) logSocket.close(); if (execSocket) execSocket.close(); if (term && term.dispose) term.dispose(); },
    };
  }

  function viewDeploy() {
    const field = (name, label, input, hint) => h('div', {},
      h('label', { for: `f-${name}` }, label), input,
      hint ? h('p', { class: 'hint', id: `f-${name}-hint` }, hint) : null,
      h('p', { class: 'field-error', id: `f-${name}-error`, 'data-error-for': name, role: 'alert' }));
    const inp = (name, attrs) => h('input', Object.assign({ id: `f-${name}`, name, 'aria-describedby': `f-${name}-hint f-${name}-error` }, attrs));
    const form = h('form', { class: 'deploy', novalidate: true });
    const upload = inp('upload', { type: 'file' });
    form.append(
      h('div', { class: 'row' },
        field('name', 'Name', inp('name', { required: true, placeholder: 'hello', autocomplete: 'off' }), 'Letters, digits, . _ - (up to 63).'),
        field('namespace', 'Namespace', inp('namespace', { value: 'default' }))),
      field('artifact', 'Artifact URL', inp('artifact', { placeholder: 'file:///path/to/static-binary' }), 'A statically linked Linux executable: file:///…, or upload one below.'),
      field('upload', 'Or upload a file', upload),
      field('image', 'Or an OCI image', inp('image', { placeholder: 'docker.io/library/busybox:1.36', autocomplete: 'off' }), 'Instead of an artifact: its Entrypoint and Cmd run, unless you give arguments below (they replace its Cmd).'),
      field('argv', 'Arguments (argv, one per line; the first is the program name; for an image: its command)', h('textarea', { id: 'f-argv', name: 'argv', 'aria-describedby': 'f-argv-error' })),
      field('env', 'Environment (KEY=value, one per line)', h('textarea', { id: 'f-env', name: 'env', 'aria-describedby': 'f-env-error' })),
      h('div', { class: 'row' },
        field('memory_mb', 'Memory (MiB)', inp('memory_mb', { type: 'number', min: '1' })),
        field('vcpus', 'vCPUs', inp('vcpus', { type: 'number', min: '0.01', step: '0.01' })),
        field('restart_policy', 'Restart policy', h('select', { id: 'f-restart_policy', name: 'restart_policy' }, ['never', 'on-failure', 'always'].map((p) => h('option', {}, p)))),
        field('driver', 'Driver', h('select', { id: 'f-driver', name: 'driver' }, ((state.node && state.node.drivers) || [{ name: 'sandbox', available: true }]).map((d) => h('option', { value: d.name, disabled: !d.available }, d.available ? d.name : `${d.name} (unavailable)`))))),
      h('p', { class: 'field-error', id: 'form-error', role: 'alert' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Deploy'),
        h('button', { type: 'button', 'data-testid': 'example', onclick: () => {
          // Debian's busybox-static (installed by scripts/setup): a static program with a shell, so that the
          // example has logs to watch and a shell to open.
          const f = form.elements;
          f.name.value = 'example';
          f.artifact.value = 'file:///bin/busybox';
          f.argv.value = 'sh\n-c\nwhile true; do echo tick $((i=i+1)); sleep 1; done';
          f.name.focus();
        } }, 'Fill in an example')));

    const setError = (name, msg) => {
      const el = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`) || $('#form-error', form);
      el.textContent = msg;
      const input = form.elements[name];
      if (input && input.setAttribute) input.setAttribute('aria-invalid', 'true');
    };
    const clearErrors = () => {
      form.querySelectorAll('.field-error').forEach((e) => { e.textContent = ''; });
      form.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
    };
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors();
      const f = form.elements;
      const spec = { name: f.name.value.trim(), namespace: f.namespace.value.trim() || 'default' };
      let ok = true;
      if (!NAME_RE.test(spec.name)) { setError('name', 'Required: letters, digits, . _ - (up to 63), starting with a letter or digit.'); ok = false; }
      if (!NAME_RE.test(spec.namespace)) { setError('namespace', 'Letters, digits, . _ - (up to 63).'); ok = false; }
      const argv = f.argv.value.split('\n').map((s) => s.trim()).filter(Boolean);
      const image = f.image.value.trim();
      if (argv.length) spec[image ? 'cmd' : 'argv'] = argv;
      const env = {};
      for (const line of f.env.value.split('\n').map((s) => s.trim()).filter(Boolean)) {
        const i = line.indexOf('=');
        if (i <= 0) { setError('env', `"${line}" is not KEY=value.`); ok = false; break; }
        env[line.slice(0, i)] = line.slice(i + 1);
      }
      if (Object.keys(env).length) spec.env = env;
      const res = {};
      if (f.memory_mb.value) res.memory_mb = Number(f.memory_mb.value);
      if (f.vcpus.value) res.vcpus = Number(f.vcpus.value);
      if (Object.keys(res).length) spec.resources = res;
      if (f.restart_policy.value !== 'never') spec.restart_policy = f.restart_policy.value;
      if (f.driver.value) spec.driver = f.driver.value;
      const file = upload.files && upload.files[0];
      if (image && (file || f.artifact.value.trim())) { setError('image', 'Give an artifact or an image, not both.'); ok = false; }
      else if (!image && !file && !f.artifact.value.trim()) { setError('artifact', 'Give an artifact URL, choose a file to upload, or name an image.'); ok = false; }
      if (!ok) return;
      try {
        if (image) spec.image = image;
        else if (file) {
          const a = await api('POST', '/v1/artifacts', await file.arrayBuffer(), true);
          spec.artifact = a.url;
        } else spec.artifact = f.artifact.value.trim();
        const w = await api('POST', '/v1/workloads', spec);
        state.workloads.set(w.id, w);
        location.hash = `#/workloads/${w.id}`;
      } catch (err) {
        const fieldName = (err.problem.field || '').split(/[.[]/)[0];
        setError(fieldName || '_form', err.message);
      }
    });
    return { root: h('div', {}, h('h1', {}, 'Deploy a workload'), form) };
  }

  function viewEvents() {
    const ft = h('input', { type: 'search', placeholder: 'Filter by type, e.g. workload_exited', 'aria-label': 'Filter events by type' });
    const fw = h('input', { type: 'search', placeholder: 'Filter by workload or namespace', 'aria-label': 'Filter events by workload or namespace' });
    const list = h('ul', { class: 'events', 'aria-label': 'Events, newest first' });
    const render = () => {
      const t = ft.value.trim(), w = fw.value.trim();
      const shown = state.events.filter((e) => (!t || e.type.includes(t)) && (!w || `${e.subject || ''} ${(e.data && e.data.namespace) || ''} ${(e.data && e.data.name) || ''}`.includes(w))).slice(-300).reverse();
      list.replaceChildren(...shown.map((e) => h('li', {}, h('span', { class: 'mono muted' }, (e.time || '').slice(11, 23)), ' ', h('strong', {}, e.type), ' ',
        e.data && e.data.name ? h('a', { href: `#/workloads/${e.subject}` }, e.data.name) : '', e.data && e.data.reason ? ` — ${e.data.reason}` : '')));
      if (!shown.length) list.replaceChildren(h('li', { class: 'muted' }, 'No events yet. They appear here as they happen.'));
    };
    ft.addEventListener('input', render); fw.addEventListener('input', render);
    (async () => {
      try {
        const r = await api('GET', '/v1/events?limit=200');
        const known = new Set(state.events.map((e) => e.id));
        for (const e of r.events || []) if (!known.has(e.id)) state.events.push(e);
        state.events.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
        render();
      } catch (_) { /* history is optional */ }
    })();
    render();
    return { root: h('div', {}, h('h1', {}, 'Events'), h('div', { class: 'toolbar' }, ft, fw), list), onEvent: render };
  }

  // The cluster (#/cluster): every node's heartbeat (GET /v1/cluster/nodes) and every node's workloads
  // (GET /v1/cluster/workloads), read again when an event arrives (at most every 2 s) or on request.  A workload on
  // another node links to that node's own dashboard (its `api` address): logs and exec are not proxied.
  function viewCluster() {
    const nodesBody = h('tbody');
    const wlBody = h('tbody');
    const status = h('p', { class: 'muted', role: 'status' }, 'Loading…');
    const refresh = h('button', { type: 'button' }, 'Refresh');
    let timer = null, last = 0, gone = false;
    const apiOf = new Map();
    const nodeCell = (id) => h('td', { class: 'mono' }, id ? `${id.slice(0, 12)}…` : '—');
    async function load() {
      last = Date.now();
      if (!(state.node && state.node.nats)) {
        status.textContent = 'This node is not in a cluster: start nexd with --nats to join one.';
        return;
      }
      try {
        const [n, w] = await Promise.all([api('GET', '/v1/cluster/nodes'), api('GET', '/v1/cluster/workloads')]);
        if (gone) return;
        nodesBody.replaceChildren(...(n.nodes || []).map((x) => {
          if (x.api) apiOf.set(x.id, x.api);
          return h('tr', { 'data-node': x.id },
            h('td', {}, x.name || '—', x.self ? ' (this node)' : ''), nodeCell(x.id),
            h('td', {}, h('span', { class: `badge ${x.alive ? 'running' : 'failed'}` }, x.alive ? 'alive' : 'dead'), x.lame_duck ? ' draining' : ''),
            h('td', {}, Object.entries(x.tags || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—'),
            h('td', { class: 'hide-small' }, (x.drivers || []).join(', ')),
            h('td', { class: 'hide-small' }, x.free ? `${x.free.memory_mb} MiB, ${x.free.vcpus} CPU` : '—'),
            h('td', {}, x.workloads ?? '—'),
            h('td', {}, `${Math.round((x.age_ms || 0) / 100) / 10} s ago`));
        }));
        wlBody.replaceChildren(...(w.workloads || []).map((x) => {
          const here = state.node && x.node === state.node.id;
          const where = apiOf.get(x.node);
          const name = here && x.id ? h('a', { href: `#/workloads/${x.id}` }, x.name)
            : where && x.id ? h('a', { href: `http://${where}/#/workloads/${x.id}`, rel: 'noopener' }, x.name) : (x.name || '—');
          return h('tr', { 'data-id': x.id || '' }, h('td', {}, name), h('td', {}, x.namespace || '—'),
            h('td', {}, badge(x.state)), nodeCell(x.node), h('td', { class: 'mono hide-small' }, x.key || '—'));
        }));
        if (!(w.workloads || []).length) wlBody.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No workloads on any node.')));
        status.textContent = `${(n.nodes || []).filter((x) => x.alive).length} of ${(n.nodes || []).length} nodes alive; ` +
          `${w.nodes_answered} of ${w.nodes_asked} answered; desired state: ${n.desired && n.desired.entries} entries`;
      } catch (e) {
        if (!gone) status.textContent = `Cannot read the cluster: ${e.message}`;
      }
    }
    const onEvent = () => {
      if (timer) return;
      timer = setTimeout(() => { timer = null; load(); }, Math.max(0, 2000 - (Date.now() - last)));
    };
    refresh.addEventListener('click', load);
    load();
    const th = (t, i, small) => h('th', { scope: 'col', class: small.includes(i) ? 'hide-small' : null }, t);
    return {
      root: h('div', {}, h('h1', {}, 'Cluster'), h('div', { class: 'toolbar' }, refresh), status,
        h('h2', {}, 'Nodes'),
        h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Cluster nodes' },
          h('thead', {}, h('tr', {}, ['Name', 'Id', 'Alive', 'Tags', 'Drivers', 'Free', 'Workloads', 'Heard'].map((t, i) => th(t, i, [4, 5])))), nodesBody)),
        h('h2', {}, 'Workloads on every node'),
        h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Workloads on every node' },
          h('thead', {}, h('tr', {}, ['Name', 'Namespace', 'State', 'Node', 'Key'].map((t, i) => th(t, i, [4])))), wlBody))),
      onEvent,
      cleanup: () => { gone = true; if (timer) clearTimeout(timer); },
    };
  }

  // --- routing --------------------------------------------------------------------------------------------
  function route() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
    if (state.view && state.view.cleanup) state.view.cleanup();
    if (state.view && state.view.onEvent) listeners.delete(state.view.onEvent);
    let name = parts[0] || 'overview', v;
    if (name === 'workloads' && parts[1]) v = viewDetail(decodeURIComponent(parts[1]));
    else if (name === 'workloads') v = viewWorkloads();
    else if (name === 'deploy') v = viewDeploy();
    else if (name === 'events') v = viewEvents();
    else if (name === 'cluster') v = viewCluster();
    else { name = 'overview'; v = viewOverview(); }
    state.view = v;
    if (v.onEvent) listeners.add(v.onEvent);
    main.replaceChildren(v.root);
    document.querySelectorAll('[data-nav]').forEach((a) => a.toggleAttribute('aria-current', a.dataset.nav === name));
    document.querySelectorAll('[data-nav][aria-current]').forEach((a) => a.setAttribute('aria-current', 'page'));
    document.title = `Nex — ${name}`;
  }

  function setupTheme() {
    const saved = localStorage.getItem('nex.theme');
    if (saved) document.documentElement.dataset.theme = saved;
    $('#theme').addEventListener('click', () => {
      const dark = document.documentElement.dataset.theme ? document.documentElement.dataset.theme === 'dark'
        : matchMedia('(prefers-color-scheme: dark)').matches;
      const next = dark ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      localStorage.setItem('nex.theme', next);
    });
  }

  async function start() {
    setupTheme();
    window.addEventListener('hashchange', route);
    await refreshAll().catch(() => {});
    route();
    connectEvents();
  }
  start();
})();
