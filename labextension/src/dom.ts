// The DOM helpers of the sidebar and the futures panel. They are the notebook widget's
// own (plain ES modules in scatter_magics/notebook/static/, typed by the .d.ts beside
// them): the widget has no build step and runs those files as they are (pasted into its
// ESM by scatter_magics/notebook/esm.py), while this bundle imports them, so there is one
// copy of each helper and of widget.css's classes they draw with (style/index.js).

import { h, memoryBar } from '../../scatter_magics/notebook/static/dom.js';
import { formatBytes } from '../../scatter_magics/notebook/static/sizes.js';

import type { IWorker } from './model';

export {
  h,
  plural,
  statusBadge,
  STATUSES
} from '../../scatter_magics/notebook/static/dom.js';
export { formatBytes } from '../../scatter_magics/notebook/static/sizes.js';

/** A worker's memory bar; with no limit, no bar but its memory "/ ∞". */
export function workerMemory(w: IWorker): HTMLElement {
  const text = `${formatBytes(w.memory)} / ∞`;
  return memoryBar(w, h('span', { class: 'sm-membar-text' }, text));
}
