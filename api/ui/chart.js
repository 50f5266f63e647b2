// Small SVG charts for the stats of a function: a line chart (values may be
// null: the line breaks there) and a stacked bar chart. No library. Each
// bucket has an invisible full-height strip whose <title> lists its values,
// so hovering (or a long press) anywhere in the column shows them.
//
// series: [{name, values: [number|null], className}] — `className` picks the
// colour in functions.css (.chart .ok, .bad, .p50, .p95, …).

import { h, svg } from './lib.js';

const W = 480;
const H = 200;
const PAD = { left: 52, right: 10, top: 10, bottom: 26 };

/**
 * A round number ≥ `value` for the top of the axis (1, 2 or 5 times a power
 * of ten). Counts (`whole`) use 2, 4 or 10 times one, at least 2, so the
 * middle tick is a whole number too.
 */
function niceMax(value, whole = false) {
  if (!(value > 0)) return whole ? 2 : 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const steps = whole ? [2, 4, 10, 20] : [1, 2, 5, 10];
  return Math.max(whole ? 2 : 0, steps.map((m) => m * power).find((m) => m >= value));
}

/** The axes, gridlines and labels; returns the scales and the SVG root. */
function frame({ labels, yMax, yFormat, title, empty }) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const band = plotW / Math.max(labels.length, 1);
  const x = (i) => PAD.left + band * (i + 0.5);
  const y = (v) => PAD.top + plotH * (1 - v / yMax);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart-svg' });
  for (const v of [0, yMax / 2, yMax]) {
    root.append(svg('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    // Without data the scale means nothing: gridlines only.
    if (!empty) root.append(svg('text', { class: 'axis', x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, yFormat(v)));
  }
  // About six labels along the bottom, whatever the number of buckets.
  const every = Math.max(1, Math.ceil(labels.length / 6));
  labels.forEach((label, i) => {
    if (i % every === 0) {
      root.append(svg('text', { class: 'axis', x: x(i), y: H - 8, 'text-anchor': 'middle' }, label));
    }
  });
  return { root, x, y, band, plotH };
}

/** The hover strips, one per bucket, added last so they sit on top. */
function hoverStrips(root, { labels, series, x, band, yFormat, titles }) {
  labels.forEach((label, i) => {
    const lines = series.map((s) => `${s.name}: ${s.values[i] === null || s.values[i] === undefined ? '—' : yFormat(s.values[i])}`);
    root.append(
      svg(
        'rect',
        { class: 'hover', x: x(i) - band / 2, y: PAD.top, width: band, height: H - PAD.top - PAD.bottom },
        svg('title', {}, [titles?.[i] || label, ...lines].join('\n')),
      ),
    );
  });
}

function figure(title, root, series, empty) {
  if (empty) root.append(svg('text', { class: 'empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No data in this period'));
  return h(
    'figure',
    { class: 'chart' },
    h('figcaption', {}, title),
    root,
    h('ul', { class: 'legend' }, series.map((s) => h('li', {}, h('span', { class: `swatch ${s.className || ''}` }), s.name))),
  );
}

const present = (v) => v !== null && v !== undefined && Number.isFinite(v);

/**
 * A line chart. options: {title, labels: [string], titles?: [string] (hover
 * headings), series, yFormat?(v), yMax? (fixed top, e.g. 100 for percent)}.
 */
export function lineChart({ title, labels = [], titles, series = [], yFormat = String, yMax }) {
  const values = series.flatMap((s) => s.values.filter(present));
  const top = yMax ?? niceMax(Math.max(0, ...values));
  const { root, x, y, band } = frame({ labels, yMax: top, yFormat, title, empty: values.length === 0 });
  for (const s of series) {
    // One path segment per run of present values: a gap is a gap, not zero.
    let d = '';
    s.values.forEach((v, i) => {
      if (!present(v)) return;
      d += `${present(s.values[i - 1]) ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (d) root.append(svg('path', { class: `line ${s.className || ''}`, d }));
    s.values.forEach((v, i) => {
      if (present(v)) root.append(svg('circle', { class: `point ${s.className || ''}`, cx: x(i), cy: y(v), r: 2.5 }));
    });
  }
  hoverStrips(root, { labels, series, x, band, yFormat, titles });
  return figure(title, root, series, values.length === 0);
}

/** A stacked bar chart (counts); same options as lineChart. */
export function barChart({ title, labels = [], titles, series = [], yFormat = String }) {
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (present(s.values[i]) ? s.values[i] : 0), 0));
  const top = niceMax(Math.max(0, ...totals), true);
  const { root, x, y, band } = frame({ labels, yMax: top, yFormat, title, empty: totals.every((t) => t === 0) });
  const width = Math.max(1, band * 0.7);
  labels.forEach((_, i) => {
    let base = 0;
    for (const s of series) {
      const v = present(s.values[i]) ? s.values[i] : 0;
      if (v > 0) {
        root.append(
          svg('rect', { class: `bar ${s.className || ''}`, x: x(i) - width / 2, y: y(base + v), width, height: y(base) - y(base + v) }),
        );
      }
      base += v;
    }
  });
  hoverStrips(root, { labels, series, x, band, yFormat, titles });
  return figure(title, root, series, totals.every((t) => t === 0));
}
