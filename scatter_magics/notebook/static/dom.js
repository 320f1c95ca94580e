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
 * What a summary's `keys` say in words, as scatter_magics/summary.py's keys_phrase
 * writes them: "3 keys (5 replicas), 2 MiB in memory" (replicas only when they differ).
 */
export function keysPhrase(keys) {
  const replicas = keys?.replicas ?? 0;
  const held = keys?.by_status?.finished ?? 0;
  const extra = replicas !== held ? ` (${plural(replicas, 'replica')})` : '';
  return `${plural(keys?.count ?? 0, 'key')}${extra}, ${formatBytes(keys?.nbytes ?? 0)} in memory`;
}

/** "data 824 MiB of 11.8 GiB · process 26.6 MiB", as summary.py's memory_phrase. */
export function memoryPhrase(w) {
  const of = w.memory_limit
    ? ` of ${formatBytes(w.memory_limit)}`
    : ' (no limit)';
  return `data ${formatBytes(w.nbytes ?? 0)}${of} · process ${formatBytes(w.memory ?? 0)}`;
}

/**
 * A worker's memory: the data it holds (shared-memory data it maps included) filling a
 * bar against its limit, its process's resident memory as a second mark (a tick), and
 * words saying which number is which. A worker with no limit has no bar.
 */
export function memoryBar(w) {
  const words = h('span', { class: 'sm-membar-text' }, memoryPhrase(w));
  if (!w.memory_limit) {
    return h('div', { class: 'sm-membar-cell' }, words);
  }
  const data = Math.min(100, (100 * (w.nbytes ?? 0)) / w.memory_limit);
  const process = Math.min(100, (100 * (w.memory ?? 0)) / w.memory_limit);
  const level = data > 85 ? ' sm-high' : data > 60 ? ' sm-mid' : '';
  return h(
    'div',
    { class: 'sm-membar-cell', title: memoryPhrase(w) },
    h(
      'div',
      { class: `sm-membar${level}` },
      h('div', { class: 'sm-membar-data', style: `width:${data.toFixed(1)}%` }),
      h('div', {
        class: 'sm-membar-process',
        style: `left:${process.toFixed(1)}%`
      })
    ),
    words
  );
}
