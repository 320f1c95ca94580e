// The DOM helpers of the sidebar and the futures panel. They are the notebook widget's
// own (plain ES modules in scatter_magics/notebook/static/, typed by the .d.ts beside
// them): the widget has no build step and runs those files as they are (pasted into its
// ESM by scatter_magics/notebook/esm.py), while this bundle imports them, so there is one
// copy of each helper and of widget.css's classes they draw with (style/index.js).

export {
  h,
  keysPhrase,
  memoryBar,
  memoryPhrase,
  plural,
  statusBadge,
  STATUSES
} from '../../scatter_magics/notebook/static/dom.js';
export {
  nameColour,
  taskStream,
  timeline
} from '../../scatter_magics/notebook/static/plots.js';
export { formatBytes } from '../../scatter_magics/notebook/static/sizes.js';

/** "14:02:11" today, "3 Dec 14:02" another day: when a cluster started. */
export function startedAt(seconds: number, now = new Date()): string {
  const when = new Date(seconds * 1000);
  const time = when.toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit'
  });
  if (when.toDateString() === now.toDateString()) {
    return time;
  }
  const day = when.toLocaleDateString([], { day: 'numeric', month: 'short' });
  return `${day} ${time}`;
}
