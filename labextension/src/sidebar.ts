import { CommandRegistry } from '@lumino/commands';
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
  timeline
} from './dom';
import { ICluster, IDataset, PolledResource } from './model';

/** The commands a card's buttons run, with `{ id }` of the card's cluster. */
export interface ICardCommands {
  open: string;
  connect: string;
  stop: string;
  start: string;
}

/**
 * The left-sidebar panel: one card per cluster registered on this server, redrawn when
 * the listing changes (pushed by `clusters/ws`; else `GET clusters` polled once a second).
 */
export class ClusterSidebar extends Widget {
  constructor(options: ClusterSidebar.IOptions) {
    super();
    this.id = 'scatter-magics-sidebar';
    this.addClass('sm-lab-sidebar');
    this.title.caption = 'Scatter clusters';
    this._commands = options.commands;
    this._ids = options.commandIds;
    this._clusters = options.clusters;
    this._list = h('div', { class: 'sm-lab-cards' });
    this._error = h('div', { class: 'sm-lab-error', hidden: '' });
    this.node.append(
      h(
        'div',
        { class: 'sm-lab-header' },
        h('h2', {}, 'Scatter clusters'),
        h(
          'button',
          {
            class: 'jp-Button sm-lab-start',
            title: 'Start a cluster owned by the server',
            onclick: () => this._run(this._ids.start, {})
          },
          'New cluster'
        )
      ),
      this._error,
      this._list
    );
    this._clusters.changed.connect((_, clusters) => this._render(clusters));
    this._clusters.failed.connect((_, error) => this._showError(error.message));
    this._render(this._clusters.value ?? []);
  }

  private _render(clusters: ICluster[]): void {
    this._showError('');
    this._list.replaceChildren(
      ...(clusters.length
        ? clusters.map(c => this._card(c))
        : [
            h(
              'p',
              { class: 'sm-lab-empty' },
              'No cluster is running. Start one here, or run %scatter or Client() in a notebook.'
            )
          ])
    );
  }

  private _card(cluster: ICluster): HTMLElement {
    const statuses = STATUSES.filter(s => cluster.keys.by_status[s]).map(s =>
      statusBadge(s, cluster.keys.by_status[s], 'sm-lab-count')
    );
    const history = new Map(
      (cluster.history?.workers ?? []).map(w => [w.address, w])
    );
    const button = (label: string, command: string, title: string) =>
      h(
        'button',
        {
          class: `jp-Button sm-lab-${label.split(' ')[0].toLowerCase()}`,
          title,
          onclick: () => this._run(command, { id: cluster.id })
        },
        label
      );
    return h(
      'div',
      {
        class: 'sm-widget sm-lab-card',
        'data-cluster-id': cluster.id,
        'data-status': cluster.status,
        'data-workers': String(cluster.workers.length)
      },
      h(
        'div',
        { class: 'sm-lab-card-head' },
        h(
          'span',
          { class: 'sm-lab-name', title: cluster.name },
          ...wrappable(cluster.name)
        ),
        h(
          'span',
          { class: 'sm-lab-backend', title: cluster.scheduler_address },
          cluster.server_owned ? `${cluster.backend} · server` : cluster.backend
        )
      ),
      cluster.error ? h('div', { class: 'sm-stale' }, cluster.error) : null,
      h(
        'div',
        { class: 'sm-summary sm-lab-meta' },
        h(
          'span',
          { class: 'sm-lab-workers' },
          `${plural(cluster.workers.length, 'worker')} alive`
        ),
        h(
          'span',
          { class: 'sm-lab-threads' },
          plural(cluster.totals?.nthreads ?? 0, 'thread')
        ),
        h(
          'span',
          {
            class: 'sm-lab-started',
            title: new Date(cluster.started * 1000).toString()
          },
          `started ${startedAt(cluster.started)}`
        ),
        cluster.keys.names === undefined
          ? null
          : h(
              'span',
              {
                class: 'sm-lab-names',
                title: 'Values by name: the pieces of a split value count once'
              },
              plural(cluster.keys.names, 'name')
            )
      ),
      h('div', { class: 'sm-lab-keys' }, keysPhrase(cluster.keys)),
      statuses.length
        ? h('div', { class: 'sm-summary sm-lab-statuses' }, ...statuses)
        : null,
      cluster.connected?.length
        ? h(
            'div',
            { class: 'sm-lab-connected' },
            `Connected: ${cluster.connected.map(c => c.name).join(', ')}`
          )
        : null,
      cluster.dashboard_link
        ? h(
            'a',
            {
              class: 'sm-lab-dashboard',
              href: cluster.dashboard_link,
              target: '_blank',
              rel: 'noopener'
            },
            'Dask dashboard'
          )
        : null,
      h(
        'div',
        { class: 'sm-lab-worker-bars' },
        ...cluster.workers.map(w =>
          h(
            'div',
            { class: 'sm-lab-worker', 'data-worker': w.name, title: w.address },
            h(
              'div',
              { class: 'sm-lab-worker-head' },
              h('span', { class: 'sm-lab-worker-name' }, w.name),
              timeline(history.get(w.address), 96, 18)
            ),
            memoryBar(w)
          )
        )
      ),
      cluster.datasets?.length ? datasetList(cluster.datasets) : null,
      h(
        'div',
        { class: 'sm-lab-actions' },
        button(
          'Futures',
          this._ids.open,
          'Open the live futures table, memory over time and task stream'
        ),
        button(
          'Connect notebook',
          this._ids.connect,
          'Insert code connecting the active notebook to this cluster'
        ),
        cluster.remote
          ? null
          : button('Stop', this._ids.stop, 'Stop this cluster and its workers')
      )
    );
  }

  private _showError(message: string): void {
    this._error.textContent = message;
    this._error.hidden = !message;
  }

  private _run(command: string, args: { id?: string }): void {
    this._commands
      .execute(command, args)
      .catch(error => this._showError(String(error?.message ?? error)));
  }

  private _commands: CommandRegistry;
  private _ids: ICardCommands;
  private _clusters: PolledResource<ICluster[]>;
  private _list: HTMLElement;
  private _error: HTMLElement;
}

/**
 * A name as text nodes with a break opportunity after each "/" (`<wbr>`): a long
 * notebook path wraps at its folders and words, never inside a word.
 */
export function wrappable(name: string): (string | HTMLElement)[] {
  const parts: (string | HTMLElement)[] = [];
  name.split('/').forEach((part, i, all) => {
    parts.push(i < all.length - 1 ? `${part}/` : part);
    if (i < all.length - 1) {
      parts.push(h('wbr'));
    }
  });
  return parts;
}

export namespace ClusterSidebar {
  export interface IOptions {
    commands: CommandRegistry;
    commandIds: ICardCommands;
    clusters: PolledResource<ICluster[]>;
  }
}

/** The published datasets of a card: name, size and the workers holding them. */
function datasetList(datasets: IDataset[]): HTMLElement {
  return h(
    'div',
    { class: 'sm-lab-datasets' },
    h('div', { class: 'sm-lab-datasets-title' }, 'Published datasets'),
    ...datasets.map(d =>
      h(
        'div',
        {
          class: 'sm-lab-dataset',
          'data-dataset': d.name,
          title:
            'Published: it outlives kernels; %gather it by name after %cluster connect'
        },
        h('span', { class: 'sm-lab-dataset-name' }, d.name),
        h(
          'span',
          { class: 'sm-lab-dataset-size' },
          d.nbytes === null ? '' : formatBytes(d.nbytes)
        ),
        h(
          'span',
          { class: 'sm-lab-dataset-holders' },
          d.workers.length ? d.workers.join(', ') : 'no worker'
        )
      )
    )
  );
}
