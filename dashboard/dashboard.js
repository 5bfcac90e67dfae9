// The live dashboard: a read-only MQTT subscriber over WebSocket, logged in as the public viewer.
// Everything it shows comes from the public namespace (woodytoys/public/#, lib/topics.ts): retained
// stats and stock levels, and each order's status under an anonymous reference. Nothing personal.
import mqtt from './vendor/mqtt.esm.js';
import uPlot from './vendor/uPlot.esm.js';

const $ = (id) => document.getElementById(id);
const SECONDS_SHOWN = 90; // the ERP chart's window
const state = {
  erp: undefined,
  series: [], // { second, units, rejectedUnits }
  orders: new Map(), // public order reference → { status, at }
  counts: undefined, // from woodytoys/public/stats/orders when published
  parked: 0, // pending orders parked (the ERP could not take them), same source
  deadLetters: {}, // consumer → { waiting, replayed }, from woodytoys/public/stats/deadletters
  workers: new Map(),
  groups: [],
  stock: new Map(),
};
window.dashboard = state; // for the browser test and the curious

async function settings() {
  const defaults = { path: '/mqtt', username: undefined, password: undefined };
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    if (res.ok) return { ...defaults, ...(await res.json()) };
  } catch {
    // no config: anonymous, same origin
  }
  return defaults;
}

function setConnection(text, stateName) {
  const el = $('connection');
  el.textContent = text;
  el.dataset.state = stateName;
}

const parse = (payload) => {
  try {
    return JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return undefined;
  }
};

const PUBLIC = 'woodytoys/public/';

function onMessage(topic, payload) {
  const msg = parse(payload);
  if (!msg || !topic.startsWith(PUBLIC)) return;
  const parts = topic.slice(PUBLIC.length).split('/');
  const path = parts.join('/');
  if (path === 'stats/erp') return onErp(msg);
  if (path === 'stats/orders') {
    state.counts = msg.counts;
    state.parked = Number(msg.parked) || 0;
    return renderOrders();
  }
  if (path === 'stats/deadletters') {
    state.deadLetters = msg.byConsumer && typeof msg.byConsumer === 'object' ? msg.byConsumer : {};
    return renderDeadLetters();
  }
  if (path === 'stats/broker') {
    state.groups = Array.isArray(msg.groups) ? msg.groups : [];
    return renderBacklog();
  }
  if (parts[0] === 'stats' && parts[1] === 'workers') {
    state.workers.set(parts.slice(2).join('/') || msg.workerId || '?', msg);
    return renderWorkers();
  }
  if (parts[0] === 'stock' && parts[1] === 'levels' && msg.data) {
    state.stock.set(msg.data.productId, msg.data);
    return renderStock();
  }
  if (path !== 'orders/status' || msg.type !== 'woodytoys.public.order-status') return;
  const { ref, status } = msg.data ?? {};
  if (typeof ref !== 'string' || !['pending', 'confirmed', 'rejected'].includes(status)) return;
  const known = state.orders.get(ref);
  if (known && known.status !== 'pending' && status === 'pending') return; // events may arrive out of order
  state.orders.set(ref, { status, at: msg.time });
  while (state.orders.size > 500) state.orders.delete(state.orders.keys().next().value);
  renderOrders();
}

function onErp(msg) {
  state.erp = msg;
  const cost = msg.costs?.order ?? 1;
  for (const s of msg.seconds ?? []) {
    const point = { second: s.second, units: s.units, rejectedUnits: s.rejected * cost };
    const i = state.series.findIndex((p) => p.second === s.second);
    if (i >= 0) state.series[i] = point;
    else state.series.push(point);
  }
  state.series.sort((a, b) => a.second - b.second);
  state.series = state.series.slice(-SECONDS_SHOWN);
  renderErp();
}

function renderErp() {
  const e = state.erp;
  $('erp-figures').innerHTML = [
    ['capacity RU/s', e.capacity],
    ['calls', e.calls],
    ['accepted', e.accepted],
    ['429s', e.rejected],
    ['duplicates', e.duplicates],
    ['refused', e.refused],
  ]
    .map(([k, v]) => `<div><dt>${k}</dt><dd>${v ?? 0}</dd></div>`)
    .join('');
  drawChart($('erp-chart'), state.series, e.capacity);
}

// The ERP chart: uPlot (vendored like mqtt.js's browser build, see package.json's prepare) draws
// the axes, time labels, hover legend and high-DPI canvas; we give it one point per ERP second.
// Rejected units are stacked on the accepted ones: that series carries their sum, drawn first.
let chart;

function chartOptions(width) {
  const bars = uPlot.paths.bars({ size: [0.8, 12] });
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return {
    width,
    height: 260,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, 1)] } },
    axes: [{ stroke: css('--muted') }, { stroke: css('--muted'), label: 'RU/s' }],
    series: [
      {},
      { label: 'rejected (429)', fill: css('--bad'), stroke: css('--bad'), paths: bars, points: { show: false } },
      { label: 'accepted', fill: css('--ok'), stroke: css('--ok'), paths: bars, points: { show: false } },
      { label: 'capacity', stroke: css('--cap'), dash: [6, 4], width: 1.5, points: { show: false } },
    ],
  };
}

function drawChart(container, series, capacity) {
  const data = [
    series.map((p) => p.second),
    series.map((p) => p.units + p.rejectedUnits),
    series.map((p) => p.units),
    series.map(() => capacity),
  ];
  if (!chart) {
    chart = new uPlot(chartOptions(container.clientWidth || 960), data, container);
    new ResizeObserver(() => chart.setSize({ width: container.clientWidth, height: 260 })).observe(container);
  } else chart.setData(data);
  container.dataset.points = String(series.length);
  container.dataset.lastUnits = String(series.at(-1)?.units ?? 0);
}

function renderOrders() {
  const counts = { pending: 0, confirmed: 0, rejected: 0 };
  if (state.counts) Object.assign(counts, state.counts);
  else for (const o of state.orders.values()) counts[o.status]++;
  counts.parked = state.parked;
  for (const el of document.querySelectorAll('#order-counts dd')) el.textContent = String(counts[el.dataset.status] ?? 0);
  const latest = [...state.orders.entries()].slice(-12).reverse();
  $('latest-orders').innerHTML = latest
    .map(([ref, o]) => `<li class="${o.status}"><button type="button" data-ref="${escape(ref)}" title="show its timeline"><code>${escape(ref.slice(0, 8))}</code><span>${o.status}</span></button></li>`)
    .join('');
}

// A clicked order's timeline: its hops through the services (GET /api/orders/{ref}/timeline, built by
// the orders service from what every stage recorded; nothing personal), as bars on one time axis.
async function showTimeline(ref) {
  const box = $('timeline');
  box.dataset.ref = ref;
  box.dataset.state = 'loading';
  $('timeline-ref').textContent = ref.slice(0, 8);
  let timeline;
  try {
    const res = await fetch(`/api/orders/${encodeURIComponent(ref)}/timeline`, { cache: 'no-store' });
    if (!res.ok) throw new Error(res.status === 404 ? 'nothing recorded yet' : `HTTP ${res.status}`);
    timeline = await res.json();
  } catch (err) {
    box.dataset.state = 'error';
    $('timeline-hops').tBodies[0].innerHTML = `<tr><td colspan="4">${escape(err.message)}</td></tr>`;
    return;
  }
  if (box.dataset.ref !== ref) return; // another order was clicked meanwhile
  const starts = timeline.hops.map((h) => Date.parse(h.start));
  const t0 = Math.min(...starts);
  const total = Math.max(1, ...timeline.hops.map((h, i) => starts[i] - t0 + (h.durationMs ?? 0)));
  const facts = (d) => (d ? Object.entries(d).map(([k, v]) => `${k} ${v}`).join(', ') : '');
  $('timeline-trace').textContent = timeline.traceId ? `trace ${timeline.traceId}` : '';
  $('timeline-hops').tBodies[0].innerHTML = timeline.hops
    .map((h, i) => {
      const left = ((starts[i] - t0) / total) * 100;
      const width = Math.max(0.5, ((h.durationMs ?? 0) / total) * 100);
      const cls = h.detail?.status === 429 || h.detail?.result === 'unavailable' ? 'throttled' : h.name.startsWith('wait') ? 'wait' : 'work';
      return `<tr class="${cls}"><td>${escape(h.service)}</td><td>${escape(h.name)}<small>${escape(facts(h.detail))}</small></td><td>${h.durationMs === null ? '…' : `${Math.round(h.durationMs)} ms`}</td><td class="bar"><span style="margin-left:${left.toFixed(2)}%;width:${width.toFixed(2)}%"></span></td></tr>`;
    })
    .join('');
  box.dataset.state = 'shown';
  box.dataset.hops = String(timeline.hops.length);
}

function renderDeadLetters() {
  // Kept by the dead-letter service until an operator replays them (/api/deadletters).
  $('dead-letters').tBodies[0].innerHTML = Object.entries(state.deadLetters)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([consumer, n]) => `<tr><td>${escape(consumer)}</td><td>${Number(n?.waiting) || 0}</td><td>${Number(n?.replayed) || 0}</td></tr>`)
    .join('');
}

function renderBacklog() {
  // The workflows that drain into the ERP first, then the services' own groups.
  const rank = (g) => (String(g.group).endsWith('-workers') ? 0 : 1);
  $('backlog').tBodies[0].innerHTML = [...state.groups]
    .sort((a, b) => rank(a) - rank(b) || String(a.group).localeCompare(String(b.group)))
    .map((g) => `<tr><td>${escape(g.group)}${g.filter ? ` <small>${escape(g.filter)}</small>` : ''}</td><td>${g.depth ?? 0}</td><td>${g.inFlight ?? 0}</td></tr>`)
    .join('');
}

function renderWorkers() {
  $('workers').tBodies[0].innerHTML = [...state.workers.entries()]
    .map(([id, w]) => {
      const backlog = typeof w.backlog === 'object' && w.backlog ? Object.entries(w.backlog).map(([k, v]) => `${k} ${v}`).join(', ') : (w.backlog ?? '');
      return `<tr><td>${escape(id)}</td><td>${w.leasedPartitions ?? 0}${w.partitions ? `/${w.partitions}` : ''}</td><td>${Math.round(w.rateRuPerSec ?? w.capacityRu ?? 0)}</td><td>${escape(String(backlog))}</td></tr>`;
    })
    .join('');
}

function renderStock() {
  const items = [...state.stock.values()].sort((a, b) => a.productId.localeCompare(b.productId));
  $('stock').innerHTML = items.map((s) => `<li class="${s.available < 5 ? 'low' : ''}"><span>${escape(s.productId)}</span><b>${s.available}</b></li>`).join('');
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

$('latest-orders').addEventListener('click', (e) => {
  const button = e.target.closest('button[data-ref]');
  if (button) void showTimeline(button.dataset.ref);
});

const cfg = await settings();
const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
const client = mqtt.connect(`${scheme}://${location.host}${cfg.path}`, {
  // The broker ties client ids to users: the viewer's are viewer-… (broker/mosquitto/acl).
  clientId: `${cfg.username || 'dashboard'}-${Math.random().toString(16).slice(2, 10)}`,
  clean: true,
  reconnectPeriod: 2000,
  ...(cfg.username ? { username: cfg.username, password: cfg.password } : {}),
});
client.on('connect', () => {
  setConnection('connected', 'connected');
  client.subscribe(`${PUBLIC}#`, { qos: 0 });
});
client.on('offline', () => setConnection('offline — reconnecting…', 'offline'));
client.on('error', (err) => setConnection(`error: ${err.message}`, 'error'));
client.on('message', onMessage);
