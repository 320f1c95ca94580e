// Small SVG pictures both front ends draw: a worker's memory over the last five minutes
// and the task stream of the last minute (the plot Dask users open first on its
// dashboard, without Bokeh). The notebook widget gets this file pasted into its ESM
// (scatter_magics/notebook/esm.py); the labextension imports it (types in plots.d.ts).
// scatter_magics/notebook/plots_html.py draws the same pictures for static outputs;
// nameColour is its name_colour, value for value (tests/test_plots.py checks).

import { formatBytes } from './sizes.js';

const SVG = 'http://www.w3.org/2000/svg';

// Tableau 10 without its red, which marks transfers (as Dask's task stream does).
export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#9c755f',
  '#ff9da7',
  '#bab0ac'
];
export const TRANSFER = '#e15759';
export const ERROR = '#b71c1c';

/** The colour of a function's bars: a 31-multiplier hash of its code points. */
export function nameColour(name) {
  let hash = 0;
  for (const ch of name) {
    hash = (Math.imul(hash, 31) + ch.codePointAt(0)) >>> 0;
  }
  return PALETTE[hash % PALETTE.length];
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

function titled(node, text) {
  node.append(svg('title', {}, text));
  return node;
}

function points(values, top, width, height) {
  const n = Math.max(1, values.length - 1);
  return values
    .map((v, i) =>
      v === null || v === undefined
        ? null
        : `${((width * i) / n).toFixed(1)},${(height - (height * v) / top).toFixed(1)}`
    )
    .filter(p => p !== null);
}

/**
 * A worker's last minutes: data held (filled, the memory bar's colour) and process
 * memory (a dashed line), scaled to their peak. `series` is one worker of a history
 * answer ({memory: [...], nbytes: [...]}, null where the worker was not there).
 */
export function timeline(series, width = 120, height = 24) {
  const memory = series?.memory ?? [];
  const nbytes = series?.nbytes ?? [];
  const known = [...memory, ...nbytes].filter(
    v => v !== null && v !== undefined
  );
  const node = svg('svg', {
    class: 'sm-timeline',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  if (nbytes.filter(v => v !== null && v !== undefined).length < 2) {
    node.setAttribute('aria-label', 'no history yet');
    return node;
  }
  const top = Math.max(Math.max(...known) * 1.1, 1);
  const peak = values => Math.max(0, ...values.filter(v => v !== null));
  const label =
    `last ${nbytes.length} samples: data held up to ${formatBytes(peak(nbytes))}, ` +
    `process memory up to ${formatBytes(peak(memory))}`;
  node.setAttribute('aria-label', label);
  const data = points(nbytes, top, width, height);
  if (data.length) {
    const first = data[0].split(',')[0];
    const last = data[data.length - 1].split(',')[0];
    node.append(
      svg('polygon', {
        class: 'sm-timeline-data',
        points: `${first},${height} ${data.join(' ')} ${last},${height}`
      })
    );
  }
  node.append(
    svg('polyline', {
      class: 'sm-timeline-process',
      points: points(memory, top, width, height).join(' ')
    })
  );
  return titled(node, label);
}

/**
 * The seconds the plot spans: from a little before the oldest task shown to now, at least
 * 5 s and at most `span` (a minute), so a burst of short tasks is not a sliver at the
 * right edge. plots_html.shown_span computes the same.
 */
export function shownSpan(tasks, now, span = 60) {
  const oldest = Math.min(now, ...tasks.map(t => t.start));
  const needed = Math.ceil((now - oldest) * 1.1);
  return Math.max(5, Math.min(span, needed));
}

/** `[[worker address, thread]]`: one lane per worker thread, in worker-name order. */
export function taskLanes(tasks, names) {
  const seen = new Map();
  for (const t of tasks) {
    seen.set(`${t.worker}\u0000${t.thread}`, [t.worker, t.thread]);
  }
  const byName = (a, b) =>
    (names[a[0]] ?? a[0]).localeCompare(names[b[0]] ?? b[0], undefined, {
      numeric: true
    }) ||
    String(a[1]).localeCompare(String(b[1]), undefined, { numeric: true });
  return [...seen.values()].sort(byName);
}

/**
 * The task stream: a lane per worker thread over the last `span` seconds up to `now`
 * (the workers' clock), a bar per task in its function's colour, errors in the error
 * colour with a dark edge, transfers as thin red bars above the task that waited for
 * them. The legend lists the functions with their counts.
 */
export function taskStream(tasks, now, names, { span = 60, width = 640 } = {}) {
  span = shownSpan(tasks, now, span);
  const lanes = taskLanes(tasks, names);
  const wrap = document.createElement('div');
  wrap.className = 'sm-taskstream';
  if (!lanes.length) {
    wrap.append('no task ran in the last minute');
    return wrap;
  }
  const label = 110;
  const laneHeight = 14;
  const plot = width - label;
  const height = laneHeight * lanes.length + 14;
  const row = new Map(
    lanes.map((lane, i) => [`${lane[0]}\u0000${lane[1]}`, i])
  );
  const x = t =>
    label + plot * Math.max(0, Math.min(1, (t - (now - span)) / span));
  const node = svg('svg', {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `task stream: ${tasks.length} tasks in the last minute`
  });
  const threadIndex = new Map();
  lanes.forEach(([worker], i) => {
    const n = threadIndex.get(worker) ?? 0;
    threadIndex.set(worker, n + 1);
    node.append(
      svg(
        'text',
        { x: 0, y: i * laneHeight + 10, class: 'sm-taskstream-lane' },
        `${names[worker] ?? worker} #${n}`
      )
    );
  });
  const counts = new Map();
  let errors = 0;
  for (const t of tasks) {
    const y = row.get(`${t.worker}\u0000${t.thread}`) * laneHeight;
    for (const tr of t.transfers ?? []) {
      node.append(
        titled(
          svg('rect', {
            class: 'sm-taskstream-transfer',
            x: x(tr.start).toFixed(1),
            y: y + 1,
            width: Math.max(1, x(tr.stop) - x(tr.start)).toFixed(1),
            height: 3,
            fill: TRANSFER
          }),
          `transfer for ${t.key}${tr.nbytes ? `, ${formatBytes(tr.nbytes)}` : ''}`
        )
      );
    }
    const error = t.status === 'error';
    const name = t.name ?? t.key;
    counts.set(name, (counts.get(name) ?? 0) + 1);
    errors += error ? 1 : 0;
    const attrs = {
      class: `sm-taskstream-task${error ? ' sm-taskstream-error' : ''}`,
      'data-name': name,
      x: x(t.start).toFixed(1),
      y: y + 4,
      // An instant failure still shows: 4 px at least (1 px of red read as a tick).
      width: Math.max(error ? 4 : 1, x(t.stop) - x(t.start)).toFixed(1),
      height: 9,
      fill: error ? ERROR : nameColour(name)
    };
    if (error) {
      Object.assign(attrs, { stroke: '#000', 'stroke-width': 1 });
    }
    const seconds = (t.stop - t.start).toFixed(3);
    node.append(
      titled(
        svg('rect', attrs),
        `${name}: ${t.key}, ${seconds} s${error ? ' (error)' : ''}`
      )
    );
  }
  node.append(
    svg(
      'text',
      { x: label, y: height - 2, class: 'sm-taskstream-axis' },
      `−${span} s`
    ),
    svg(
      'text',
      {
        x: width,
        y: height - 2,
        'text-anchor': 'end',
        class: 'sm-taskstream-axis'
      },
      'now'
    )
  );
  const legend = document.createElement('div');
  legend.className = 'sm-taskstream-legend';
  for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1])) {
    const swatch = document.createElement('span');
    swatch.className = 'sm-swatch';
    swatch.style.background = nameColour(name);
    const item = document.createElement('span');
    item.append(swatch, ` ${name} ×${n}`);
    legend.append(item);
  }
  if (errors) {
    const item = document.createElement('span');
    item.className = 'sm-taskstream-errors';
    item.append(`✖ ${errors} failed`);
    legend.append(item);
  }
  wrap.append(node, legend);
  return wrap;
}
