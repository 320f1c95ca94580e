import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import {
  formatBytes,
  h,
  keysPhrase,
  memoryBar,
  plural,
  startedAt,
  STATUSES,
  statusBadge,
  taskStream,
  timeline
} from './dom';
import {
  ICluster,
  IKeyItem,
  ITasksAnswer,
  POLL_INTERVAL,
  PolledResource
} from './model';

/** The keys table's sortable columns: what the server sorts by (key_pages.SORTS). */
const COLUMNS: [string, string][] = [
  ['name', 'name'],
  ['key', 'key'],
  ['type', 'type'],
  ['size', 'size'],
  ['status', 'status'],
  ['workers', 'workers']
];

const TASK_SPAN = 60; // s of the task stream shown

/**
 * A main-area view of one cluster: its workers with their memory and its last five
 * minutes, the task stream of the last minute, and its futures (name, key, type, size,
 * status, the workers holding it), paged, sorted and filtered on the server
 * (`GET clusters/<id>?offset=&limit=&status=&name=&sort=&order=`), live while shown.
 * When the cluster is gone (a 404) it stops asking and says so.
 */
export class ClusterPanel extends Widget {
  constructor(
    readonly clusterId: string,
    options: ClusterPanel.IOptions = {}
  ) {
    super();
    this.id = `scatter-magics-cluster-${clusterId}`;
    this.addClass('sm-lab-panel');
    this.title.label = 'Cluster';
    this.title.closable = true;
    this._pageSize = options.pageSize ?? 50;
    const interval = options.pollInterval ?? POLL_INTERVAL;
    const base = `clusters/${encodeURIComponent(clusterId)}`;
    this._resource = new PolledResource<ICluster>(
      () => `${base}?${this._query()}`,
      interval
    );
    this._tasks = new PolledResource<ITasksAnswer>(
      () => `${base}/tasks?since=${this._cursor}`,
      interval
    );
    this._resource.changed.connect((_, cluster) => this._render(cluster));
    this._resource.failed.connect((_, error) => this._failed(error));
    this._tasks.changed.connect((_, answer) => this._tasksArrived(answer));
    this._tasks.failed.connect((_, error) => this._failed(error));
    this._body = h(
      'div',
      { class: 'sm-widget sm-lab-panel-body', 'data-cluster-id': clusterId },
      'Loading…'
    );
    this.node.append(this._body);
    this._ticker = window.setInterval(() => this._drawTasks(), 1000);
  }

  /** Rows per page (a changed setting); back to the first page. */
  set pageSize(size: number) {
    this._pageSize = size;
    this._view({ offset: 0 });
  }

  set pollInterval(interval: number) {
    this._resource.interval = interval;
    this._tasks.interval = interval;
  }

  /** True once the server said the cluster is gone: the panel asks no more. */
  get gone(): boolean {
    return this._gone;
  }

  dispose(): void {
    window.clearInterval(this._ticker);
    this._resource.dispose();
    this._tasks.dispose();
    super.dispose();
  }

  private _query(): string {
    const query = new URLSearchParams({
      offset: String(this._offset),
      limit: String(this._pageSize)
    });
    for (const [name, value] of [
      ['status', this._status],
      ['name', this._name],
      ['sort', this._sort]
    ]) {
      if (value) {
        query.set(name, value);
      }
    }
    if (this._sort) {
      query.set('order', this._descending ? 'desc' : 'asc');
    }
    return query.toString();
  }

  private _render(cluster: ICluster): void {
    this.title.label = `Cluster: ${cluster.name}`;
    // Departed workers keep their names (the history has them): task lanes stay named.
    this._names = {};
    for (const w of [...(cluster.history?.workers ?? []), ...cluster.workers]) {
      this._names[w.address] = w.name;
    }
    const keys = cluster.keys;
    const total = keys.total ?? 0;
    const history = new Map(
      (cluster.history?.workers ?? []).map(w => [w.address, w])
    );
    const workerRows = cluster.workers.map(w =>
      h(
        'tr',
        { 'data-worker': w.name },
        h('td', { class: 'sm-name' }, w.name),
        h('td', { class: 'sm-key', title: w.address }, w.address),
        h('td', { class: 'sm-num' }, String(w.nthreads)),
        h('td', { class: 'sm-memory' }, memoryBar(w)),
        h('td', {}, timeline(history.get(w.address), 160, 28)),
        h('td', { class: 'sm-num' }, String(w.nkeys))
      )
    );
    const last = Math.min(this._offset + this._pageSize, total);
    // Moving the filter into the new tree blurs it: give its focus and caret back.
    const search = this._search;
    const typing = document.activeElement === search;
    const caret = [search.selectionStart, search.selectionEnd];
    this._body.replaceChildren(
      ...(this._gone ? [this._goneNote()] : []),
      h(
        'div',
        { class: 'sm-summary' },
        h('strong', { class: 'sm-lab-name' }, cluster.name),
        h('span', {}, cluster.scheduler_address),
        h('span', {}, `started ${startedAt(cluster.started)}`),
        h('span', {}, `${plural(cluster.workers.length, 'worker')} alive`),
        h('span', { class: 'sm-keys-phrase' }, keysPhrase(keys))
      ),
      h(
        'div',
        { class: 'sm-scroll sm-lab-workers-table' },
        table(
          [
            ['worker', ''],
            ['address', ''],
            ['threads', ''],
            [
              'memory',
              'data held (bar) against the limit; process memory (tick)'
            ],
            ['last 5 min', 'data held (filled) and process memory (dashed)'],
            ['keys', 'keys held: each replica counts on its worker']
          ].map(([c, title]) => h('th', { title: title || null }, c)),
          workerRows
        )
      ),
      this._streamBox,
      this._filters(keys.by_status),
      h(
        'div',
        { class: 'sm-scroll sm-lab-keys-table' },
        table(
          this._headers(),
          (keys.items ?? []).map(k => this._keyRow(k))
        )
      ),
      h(
        'div',
        { class: 'sm-pager' },
        h(
          'button',
          {
            class: 'sm-page-btn',
            title: 'previous page',
            onclick: () =>
              this._view({ offset: Math.max(0, this._offset - this._pageSize) })
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
            title: 'next page',
            onclick: () =>
              last < total &&
              this._view({ offset: this._offset + this._pageSize })
          },
          '›'
        )
      )
    );
    if (typing) {
      search.focus();
      search.setSelectionRange(caret[0], caret[1]);
    }
    this._drawTasks();
  }

  private _filters(byStatus: { [status: string]: number }): HTMLElement {
    const chips = STATUSES.filter(s => byStatus[s] || s === this._status).map(
      s => {
        const chip = statusBadge(
          s,
          byStatus[s] ?? 0,
          `sm-chip${s === this._status ? ' sm-active' : ''}`
        );
        chip.title = s === this._status ? 'show all' : `show only ${s}`;
        chip.addEventListener('click', () =>
          this._view({ offset: 0, status: s === this._status ? '' : s })
        );
        return chip;
      }
    );
    return h(
      'div',
      { class: 'sm-summary sm-lab-filter' },
      ...chips,
      this._search
    );
  }

  /**
   * The name filter: one element for the panel's life, so that what the user is typing,
   * the caret and the focus survive the renders a poll brings (a new input per render
   * lost keystrokes typed between the render and the debounced query).
   */
  private _searchBox(): HTMLInputElement {
    const search = h('input', {
      class: 'sm-lab-name-filter',
      type: 'search',
      placeholder: 'filter by name or key',
      'aria-label': 'filter keys by name or key'
    }) as HTMLInputElement;
    search.addEventListener('input', () => {
      window.clearTimeout(this._typing);
      this._typing = window.setTimeout(
        () => this._view({ offset: 0, name: search.value.trim() }),
        250
      );
    });
    return search;
  }

  private _headers(): HTMLElement[] {
    return COLUMNS.map(([label, sort]) => {
      const active = this._sort === sort;
      const arrow = active ? (this._descending ? ' ▼' : ' ▲') : '';
      return h(
        'th',
        {
          class: `sm-sortable${active ? ' sm-active' : ''}`,
          'data-sort': sort,
          title: `sort by ${label}`,
          'aria-sort': active
            ? this._descending
              ? 'descending'
              : 'ascending'
            : 'none',
          onclick: () =>
            this._view({
              offset: 0,
              sort,
              descending: active ? !this._descending : false
            })
        },
        `${label}${arrow}`
      );
    });
  }

  private _keyRow(k: IKeyItem): HTMLElement {
    const holders = k.workers.map(a => this._names[a] ?? a);
    const died = (k.died ?? []).map(a => this._names[a] ?? a);
    return h(
      'tr',
      { 'data-status': k.status, 'data-key': k.key },
      h('td', { class: 'sm-name' }, k.name),
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
        holders.join(', '),
        died.length
          ? h(
              'span',
              {
                class: 'sm-died',
                title: 'these workers died while holding it'
              },
              `${holders.length ? ' · ' : ''}${died.join(', ')} died`
            )
          : null
      )
    );
  }

  private _tasksArrived(answer: ITasksAnswer): void {
    if (answer.now !== null) {
      this._offsetClock = answer.now - Date.now() / 1000;
    }
    this._cursor = answer.index;
    const oldest = (answer.now ?? 0) - TASK_SPAN;
    this._taskRecords = [...this._taskRecords, ...answer.tasks].filter(
      t => t.stop >= oldest
    );
    this._drawTasks();
  }

  private _drawTasks(): void {
    if (this._gone && this._streamBox.childElementCount) {
      return; // the last picture stays, as the numbers do
    }
    const now = Date.now() / 1000 + this._offsetClock;
    const width = Math.max(320, Math.min(1200, this.node.clientWidth - 40));
    this._streamBox.replaceChildren(
      h(
        'div',
        { class: 'sm-taskstream-title' },
        h('b', {}, 'Task stream'),
        ' · last minute, a lane per worker thread'
      ),
      taskStream(
        this._taskRecords.filter(t => t.stop >= now - TASK_SPAN),
        now,
        this._names,
        { span: TASK_SPAN, width }
      )
    );
  }

  private _failed(error: Error): void {
    const status = (error as ServerConnection.ResponseError).response?.status;
    if (status === 404) {
      // Gone for good (stopped, or its process ended): asking again would only fill the
      // server's log with "no running cluster has the id" (issue 17).
      this._gone = true;
      void this._resource.pause();
      void this._tasks.pause();
      this.title.label = `${this.title.label} (gone)`;
    }
    this._body.querySelector(':scope > .sm-stale')?.remove();
    this._body.prepend(
      this._gone
        ? this._goneNote()
        : h('div', { class: 'sm-stale' }, `not live: ${error.message}`)
    );
  }

  private _goneNote(): HTMLElement {
    return h(
      'div',
      { class: 'sm-stale sm-lab-gone' },
      'This cluster is gone (stopped, or its process ended): the panel stopped asking ' +
        'and shows the last state it saw.'
    );
  }

  private _view(change: {
    offset?: number;
    status?: string;
    name?: string;
    sort?: string;
    descending?: boolean;
  }): void {
    this._offset = change.offset ?? this._offset;
    this._status = change.status ?? this._status;
    this._name = change.name ?? this._name;
    this._sort = change.sort ?? this._sort;
    this._descending = change.descending ?? this._descending;
    if (!this._gone) {
      void this._resource.refresh().catch(() => undefined);
    }
  }

  private _resource: PolledResource<ICluster>;
  private _tasks: PolledResource<ITasksAnswer>;
  private _body: HTMLElement;
  private _streamBox = h('div', { class: 'sm-taskstream-box' });
  private _names: { [address: string]: string } = {};
  private _taskRecords: ITasksAnswer['tasks'] = [];
  private _cursor = 0;
  private _offsetClock = 0;
  private _ticker: number;
  private _typing = 0;
  private _search = this._searchBox();
  private _gone = false;
  private _pageSize: number;
  private _offset = 0;
  private _status = '';
  private _name = '';
  private _sort = '';
  private _descending = false;
}

function table(headers: HTMLElement[], rows: HTMLElement[]): HTMLElement {
  return h(
    'table',
    { class: 'sm-table' },
    h('thead', {}, h('tr', {}, ...headers)),
    h('tbody', {}, ...rows)
  );
}

export namespace ClusterPanel {
  export interface IOptions {
    /** Keys per page (the setting `pageSize`). */
    pageSize?: number;
    /** ms between two polls (the setting `pollInterval`). */
    pollInterval?: number;
  }
}
