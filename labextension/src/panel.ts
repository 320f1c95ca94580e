import { Widget } from '@lumino/widgets';

import {
  formatBytes,
  h,
  plural,
  STATUSES,
  statusBadge,
  workerMemory
} from './dom';
import { ICluster, PolledResource } from './model';

const PAGE_SIZE = 50;

/**
 * A main-area view of one cluster: its workers with their memory, and its futures
 * (key, type, size, status, the workers holding it), paged and filtered by status on
 * the server (`GET clusters/<id>?offset=&limit=&status=`), live while shown.
 */
export class ClusterPanel extends Widget {
  constructor(readonly clusterId: string) {
    super();
    this.id = `scatter-magics-cluster-${clusterId}`;
    this.addClass('sm-lab-panel');
    this.title.label = 'Cluster';
    this.title.closable = true;
    this._resource = new PolledResource<ICluster>(() => {
      const query = new URLSearchParams({
        offset: String(this._offset),
        limit: String(PAGE_SIZE)
      });
      if (this._status) {
        query.set('status', this._status);
      }
      return `clusters/${encodeURIComponent(clusterId)}?${query}`;
    });
    this._resource.changed.connect((_, cluster) => this._render(cluster));
    this._resource.failed.connect((_, error) => this._gone(error.message));
    this._body = h(
      'div',
      { class: 'sm-widget sm-lab-panel-body', 'data-cluster-id': clusterId },
      'Loading…'
    );
    this.node.append(this._body);
  }

  dispose(): void {
    this._resource.dispose();
    super.dispose();
  }

  private _render(cluster: ICluster): void {
    this.title.label = `Cluster: ${cluster.name}`;
    const keys = cluster.keys;
    const total = keys.total ?? 0;
    const chips = STATUSES.filter(s => keys.by_status[s]).map(s => {
      const chip = statusBadge(
        s,
        keys.by_status[s],
        `sm-chip${s === this._status ? ' sm-active' : ''}`
      );
      chip.addEventListener('click', () =>
        this._view(0, s === this._status ? '' : s)
      );
      return chip;
    });
    const workerRows = cluster.workers.map(w =>
      h(
        'tr',
        { 'data-worker': w.name },
        h('td', { class: 'sm-name' }, w.name),
        h('td', { class: 'sm-key', title: w.address }, w.address),
        h('td', { class: 'sm-num' }, String(w.nthreads)),
        h('td', {}, workerMemory(w)),
        h('td', { class: 'sm-num' }, String(w.nkeys)),
        h('td', { class: 'sm-num' }, formatBytes(w.nbytes))
      )
    );
    const nameOf = new Map(cluster.workers.map(w => [w.address, w.name]));
    const keyRows = (keys.items ?? []).map(k =>
      h(
        'tr',
        { 'data-status': k.status, 'data-key': k.key },
        h('td', { class: 'sm-key', title: k.key }, k.key),
        h('td', { class: 'sm-type' }, k.type ?? ''),
        h('td', { class: 'sm-size' }, formatBytes(k.nbytes)),
        h('td', {}, statusBadge(k.status)),
        h(
          'td',
          {
            class: 'sm-workers',
            'data-replicas': String(k.workers.length),
            title: k.workers.join('\n')
          },
          k.workers.map(a => nameOf.get(a) ?? a).join(', ')
        )
      )
    );
    const table = (columns: string[], rows: HTMLElement[]) =>
      h(
        'table',
        { class: 'sm-table' },
        h('thead', {}, h('tr', {}, ...columns.map(c => h('th', {}, c)))),
        h('tbody', {}, ...rows)
      );
    const last = Math.min(this._offset + PAGE_SIZE, total);
    this._body.replaceChildren(
      h(
        'div',
        { class: 'sm-summary' },
        h('strong', {}, cluster.name),
        h('span', {}, cluster.scheduler_address),
        h('span', {}, `${plural(cluster.workers.length, 'worker')} alive`),
        h(
          'span',
          {},
          `${plural(keys.count, 'key')}, ${formatBytes(keys.nbytes)}`
        )
      ),
      h(
        'div',
        { class: 'sm-scroll sm-lab-workers-table' },
        table(
          ['worker', 'address', 'threads', 'memory', 'keys', 'data'],
          workerRows
        )
      ),
      h('div', { class: 'sm-summary sm-lab-filter' }, ...chips),
      h(
        'div',
        { class: 'sm-scroll sm-lab-keys-table' },
        table(['key', 'type', 'size', 'status', 'workers'], keyRows)
      ),
      h(
        'div',
        { class: 'sm-pager' },
        h(
          'button',
          {
            class: 'sm-page-btn',
            onclick: () =>
              this._view(Math.max(0, this._offset - PAGE_SIZE), this._status)
          },
          '‹'
        ),
        h(
          'span',
          { class: 'sm-page-label' },
          total ? `${this._offset + 1}–${last} of ${total}` : 'no keys'
        ),
        h(
          'button',
          {
            class: 'sm-page-btn',
            onclick: () =>
              last < total && this._view(this._offset + PAGE_SIZE, this._status)
          },
          '›'
        )
      )
    );
  }

  private _gone(message: string): void {
    this._body.querySelector(':scope > .sm-stale')?.remove();
    this._body.prepend(h('div', { class: 'sm-stale' }, `not live: ${message}`));
  }

  private _view(offset: number, status: string): void {
    this._offset = offset;
    this._status = status;
    void this._resource.refresh();
  }

  private _resource: PolledResource<ICluster>;
  private _body: HTMLElement;
  private _offset = 0;
  private _status = '';
}
