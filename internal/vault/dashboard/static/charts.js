// Inline SVG charts: a line chart over time and stacked bars per day. Each
// chart has a title and description for screen readers and a data table
// behind a disclosure, so no information is only in the picture.
import { h, table } from './ui.js';

const NS = 'http://www.w3.org/2000/svg';
// Series colours, each 3:1 or more against white (non-text contrast).
export const COLORS = ['#0a58ca', '#bf4b00', '#116329', '#8250df', '#a40e26', '#6f4400'];

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(id, title, desc, W, H) {
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, id });
  svg.appendChild(s('title', { id: `${id}-t` }, title));
  svg.appendChild(s('desc', { id: `${id}-d` }, desc));
  return svg;
}

// lineChart: series [{name, points: [{t: Date, v: number}]}], fmt formats
// values for the axis and the table.
export function lineChart(id, title, series, fmt = String) {
  const W = 760; const H = 260; const L = 70; const R = 16; const T = 14; const B = 40;
  const all = series.flatMap((x) => x.points);
  const desc = all.length ? `${series.length} series, ${all.length} points` : 'no data yet';
  const svg = frame(id, title, desc, W, H);
  const wrap = h('figure', { class: 'chartbox' }, h('figcaption', {}, h('strong', {}, title)));
  if (!all.length) {
    svg.appendChild(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No data yet'));
    wrap.appendChild(svg);
    return wrap;
  }
  let t0 = Math.min(...all.map((p) => p.t.getTime())); let t1 = Math.max(...all.map((p) => p.t.getTime()));
  if (t0 === t1) { t0 -= 3600e3; t1 += 3600e3; }
  const vmax = niceMax(Math.max(...all.map((p) => p.v)));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    svg.appendChild(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.appendChild(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmt(v)));
  }
  svg.appendChild(s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (let i = 0; i <= 3; i++) {
    const t = t0 + ((t1 - t0) * i) / 3;
    svg.appendChild(s('text', { x: x(t), y: H - B + 16, 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle' },
      new Date(t).toISOString().slice(0, 16).replace('T', ' ')));
  }
  series.forEach((ser, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = ser.points.slice().sort((a, b) => a.t - b.t);
    svg.appendChild(s('polyline', { fill: 'none', stroke: c, 'stroke-width': 2, points: pts.map((p) => `${x(p.t.getTime())},${y(p.v)}`).join(' ') }));
    for (const p of pts) {
      svg.appendChild(s('circle', { cx: x(p.t.getTime()), cy: y(p.v), r: 3.5, fill: c },
        s('title', {}, `${ser.name} ${p.t.toISOString()}: ${fmt(p.v)}`)));
    }
  });
  wrap.appendChild(svg);
  if (series.length > 1 || series[0].name) {
    wrap.appendChild(h('ul', { class: 'legend' }, series.map((ser, i) =>
      h('li', {}, h('span', { class: 'swatch', style: `background:${COLORS[i % COLORS.length]}` }), ser.name))));
  }
  wrap.appendChild(h('details', {}, h('summary', {}, `Data of “${title}”`),
    table(title, ['Series', 'Time', { label: 'Value', num: true }],
      series.flatMap((ser) => ser.points.map((p) => ({ cells: [ser.name, p.t.toISOString(), fmt(p.v)] }))))));
  return wrap;
}

// barChart: stacked bars. days: [{label, values: {key: n}}], keys: [{key, color}].
export function barChart(id, title, days, keys) {
  const W = 760; const H = 260; const L = 44; const R = 10; const T = 14; const B = 40;
  const total = (d) => keys.reduce((a, k) => a + (d.values[k.key] || 0), 0);
  // Counts: whole-number ticks, four steps.
  const vmax = Math.max(4, Math.ceil(Math.max(0, ...days.map(total)) / 4) * 4);
  const svg = frame(id, title, `${days.length} days`, W, H);
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    svg.appendChild(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.appendChild(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v)));
  }
  const bw = (W - L - R) / Math.max(1, days.length);
  days.forEach((d, i) => {
    let acc = 0;
    for (const k of keys) {
      const v = d.values[k.key] || 0;
      if (!v) continue;
      svg.appendChild(s('rect', { x: L + i * bw + bw * 0.15, width: bw * 0.7, y: y(acc + v), height: y(acc) - y(acc + v), fill: k.color },
        s('title', {}, `${d.label}: ${v} ${k.key}`)));
      acc += v;
    }
    if (days.length <= 16 || i % Math.ceil(days.length / 8) === 0) {
      svg.appendChild(s('text', { x: L + i * bw + bw / 2, y: H - B + 16, 'text-anchor': 'middle' }, d.label.slice(5)));
    }
  });
  svg.appendChild(s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  return h('figure', { class: 'chartbox' }, h('figcaption', {}, h('strong', {}, title)), svg,
    h('ul', { class: 'legend' }, keys.map((k) => h('li', {}, h('span', { class: 'swatch', style: `background:${k.color}` }), k.key))),
    h('details', {}, h('summary', {}, `Data of “${title}”`),
      table(title, ['Day', ...keys.map((k) => ({ label: k.key, num: true }))], days.map((d) => ({ cells: [d.label, ...keys.map((k) => d.values[k.key] || 0)] })))));
}
