// Small DOM builders shared by the sidebar and the futures panel. They draw with the
// notebook widget's classes (scatter_magics/notebook/static/widget.css, bundled by
// style/index.js), so a cluster looks the same in a cell and in the sidebar.

import type { IWorker } from './model';

/** Statuses in the order the widget shows them. */
export const STATUSES = ['pending', 'finished', 'error', 'cancelled', 'lost', 'released'];

const GLYPH: { [status: string]: string } = {
  pending: '◌',
  finished: '●',
  error: '✖',
  cancelled: '⊘',
  lost: '⚠',
  released: '○'
};

const UNITS = ['B', 'kiB', 'MiB', 'GiB', 'TiB', 'PiB'];

type Child = Node | string | null | undefined;
type Attributes = { [name: string]: string | ((event: Event) => void) | null | undefined };

/** `document.createElement` with attributes, `on*` handlers and children. */
export function h(tag: string, attrs: Attributes = {}, ...children: Child[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (value !== null && value !== undefined) {
      node.setAttribute(name, value);
    }
  }
  node.append(...(children.filter(c => c !== null && c !== undefined) as (Node | string)[]));
  return node;
}

/** Bytes as the notebook widget writes them (`1.5 MiB`). */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) {
    return '';
  }
  let size = n;
  let unit = 0;
  while (Math.abs(size) >= 1024 && unit < UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  if (unit === 0) {
    return `${Math.trunc(size)} B`;
  }
  const digits = size < 100 ? size.toPrecision(3).replace(/\.?0+$/, '') : String(Math.round(size));
  return `${digits} ${UNITS[unit]}`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function statusBadge(status: string, count?: number, extra = ''): HTMLElement {
  const text = `${GLYPH[status] ?? '?'} ${count === undefined ? status : `${count} ${status}`}`;
  return h('span', { class: `sm-status sm-status-${status} ${extra}`, 'data-status': status }, text);
}

/** The widget's memory bar: process memory and data held, against the worker's limit. */
export function memoryBar(w: IWorker): HTMLElement {
  const text = `${formatBytes(w.memory)} / ${w.memory_limit ? formatBytes(w.memory_limit) : '∞'}`;
  if (!w.memory_limit) {
    return h('span', { class: 'sm-membar-text' }, text);
  }
  const used = Math.min(100, (100 * w.memory) / w.memory_limit);
  const data = Math.min(used, (100 * w.nbytes) / w.memory_limit);
  const level = used > 85 ? ' sm-high' : used > 60 ? ' sm-mid' : '';
  return h(
    'div',
    { class: 'sm-membar-cell' },
    h(
      'div',
      {
        class: `sm-membar${level}`,
        title: `process ${formatBytes(w.memory)}, data ${formatBytes(w.nbytes)}, limit ${formatBytes(w.memory_limit)}`
      },
      h('div', { class: 'sm-membar-used', style: `width:${used.toFixed(1)}%` }),
      h('div', { class: 'sm-membar-data', style: `width:${data.toFixed(1)}%` })
    ),
    h('span', { class: 'sm-membar-text' }, text)
  );
}
