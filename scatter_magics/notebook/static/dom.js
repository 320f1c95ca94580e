// DOM builders both front ends draw with: the notebook widget (widget.js, which gets
// this file pasted into its ESM by scatter_magics/notebook/esm.py) and the
// labextension's sidebar and panel (which import it; types in dom.d.ts). They use
// widget.css's classes, so a cluster looks the same in a cell and in the sidebar.
// Status glyphs and colours are kept in step with widget_html.py and widget.css.

import { formatBytes } from './sizes.js';

/** Every status a key can show, in the order the views list them. */
export const STATUSES = [
  'pending',
  'running',
  'finished',
  'error',
  'cancelled',
  'lost',
  'released'
];

const GLYPH = {
  pending: '◌',
  running: '▶',
  finished: '●',
  error: '✖',
  cancelled: '⊘',
  lost: '⚠',
  released: '○'
};

/**
 * `document.createElement` with attributes, `on*` handlers and children; null and
 * undefined attributes and children are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (value !== null && value !== undefined) {
      node.setAttribute(name, value);
    }
  }
  node.append(...children.filter(c => c !== null && c !== undefined));
  return node;
}

/** `plural(1, "key")` is "1 key", `plural(2, "key")` "2 keys". */
export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A status with its glyph ("● finished"), or with a count first ("● 3 finished"). */
export function statusBadge(status, count, extra = '') {
  const label = count === undefined ? status : `${count} ${status}`;
  return h(
    'span',
    { class: `sm-status sm-status-${status} ${extra}`, 'data-status': status },
    `${GLYPH[status] ?? '?'} ${label}`
  );
}

/**
 * A worker's memory bar: process memory and data held, against its limit. A worker
 * with no limit has nothing to draw against: `withoutLimit` is shown instead (the
 * widget and the sidebar word that case differently).
 */
export function memoryBar(w, withoutLimit) {
  if (!w.memory_limit) {
    return withoutLimit;
  }
  const used = Math.min(100, (100 * w.memory) / w.memory_limit);
  const data = Math.min(used, (100 * w.nbytes) / w.memory_limit);
  const level = used > 85 ? ' sm-high' : used > 60 ? ' sm-mid' : '';
  const memory = formatBytes(w.memory);
  const limit = formatBytes(w.memory_limit);
  return h(
    'div',
    { class: 'sm-membar-cell' },
    h(
      'div',
      {
        class: `sm-membar${level}`,
        title: `process ${memory}, data ${formatBytes(w.nbytes)}, limit ${limit}`
      },
      h('div', { class: 'sm-membar-used', style: `width:${used.toFixed(1)}%` }),
      h('div', { class: 'sm-membar-data', style: `width:${data.toFixed(1)}%` })
    ),
    h('span', { class: 'sm-membar-text' }, `${memory} / ${limit}`)
  );
}
