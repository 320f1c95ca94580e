// The futures and cluster widgets (anywidget ESM, no build step).
// The kernel pages, counts and coalesces; this file only draws the synced traits and
// sends {type: "view", page, page_size, status} when the user pages or filters.
// anywidget loads one file from a blob URL, where these relative imports could not
// resolve: scatter_magics/notebook/esm.py pastes the two modules in front instead.

import { formatBytes } from './sizes.js';
import {
  h,
  keysPhrase,
  memoryBar,
  plural,
  STATUSES,
  statusBadge
} from './dom.js';
import { taskStream, timeline } from './plots.js';

// The stacked bar's segments, in the order work moves through them.
const BAR_STATUSES = ['pending', 'running', 'finished', 'error', 'lost'];
const PAGE_SIZES = [10, 25, 50, 100, 200];

const present = (...nodes) => nodes.filter(n => n !== null && n !== undefined);

function liveBadge(model) {
  return model.get('live')
    ? null
    : h(
        'span',
        {
          class: 'sm-stale',
          title:
            'the client closed or the cluster stopped: this is the last state seen'
        },
        `not live: ${model.get('not_live_reason') || 'client closed'}`
      );
}

const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true });

// A bar of one segment per status, widths proportional to the counts.
function statusBar(counts, statuses = BAR_STATUSES, cls = 'sm-statusbar') {
  const total = statuses.reduce((n, s) => n + (counts[s] ?? 0), 0);
  const segments = statuses
    .filter(s => counts[s])
    .map(s =>
      h('div', {
        class: `sm-seg sm-seg-${s}`,
        'data-status': s,
        title: `${counts[s]} ${s}`,
        style: `width:${((100 * counts[s]) / total).toFixed(2)}%`
      })
    );
  return h(
    'div',
    {
      class: cls,
      role: 'img',
      'aria-label':
        statuses
          .filter(s => counts[s])
          .map(s => `${counts[s]} ${s}`)
          .join(', ') || 'no keys'
    },
    ...segments
  );
}

// Horizontal bars: bytes of the shown futures held by each worker.
function workerBytes(byWorker) {
  const entries = Object.entries(byWorker ?? {}).sort(([a], [b]) =>
    byName(a, b)
  );
  if (!entries.length) return null;
  const most = Math.max(...entries.map(([, n]) => n));
  return h(
    'div',
    { class: 'sm-held' },
    ...entries.map(([name, n]) =>
      h(
        'div',
        { class: 'sm-held-row', 'data-worker': name },
        h('span', { class: 'sm-held-name' }, name),
        h(
          'div',
          { class: 'sm-held-track' },
          h('div', {
            class: 'sm-held-fill',
            style: `width:${((100 * n) / most).toFixed(1)}%`
          })
        ),
        h('span', { class: 'sm-held-bytes' }, formatBytes(n))
      )
    )
  );
}

// Subscribe to trait changes; return the function that unsubscribes them all.
function listen(model, handlers) {
  for (const [event, fn] of handlers) model.on(event, fn);
  return () => {
    for (const [event, fn] of handlers) model.off(event, fn);
  };
}

function renderFutures(model, el) {
  const summary = h('div', { class: 'sm-summary' });
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'sm-table' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...['name', 'key', 'type', 'size', 'status', 'workers', 'replicas'].map(
          c => h('th', { class: `sm-col-${c}` }, c)
        )
      )
    ),
    tbody
  );
  const pager = h('div', { class: 'sm-pager' });
  const pictures = h('div', { class: 'sm-pictures' });
  el.append(
    h(
      'div',
      { class: 'sm-widget sm-futures' },
      summary,
      pictures,
      h('div', { class: 'sm-scroll' }, table),
      pager
    )
  );
  const send = view => model.send({ type: 'view', ...view });

  function drawSummary() {
    const s = model.get('summary');
    const keys = s.keys ?? {};
    const counts = keys.by_status ?? {};
    const filter = model.get('status_filter');
    const chips = STATUSES.filter(st => counts[st] || st === filter).map(st => {
      const chip = statusBadge(
        st,
        undefined,
        `sm-chip${st === filter ? ' sm-active' : ''}`
      );
      chip.append(` ${counts[st] ?? 0}`);
      chip.title = st === filter ? 'show all' : `show only ${st}`;
      chip.onclick = () => send({ status: st === filter ? '' : st });
      return chip;
    });
    summary.replaceChildren(
      h('b', {}, plural(keys.count ?? 0, 'future')),
      ...chips,
      h(
        'span',
        { class: 'sm-bytes' },
        `${formatBytes(keys.nbytes ?? 0)} in memory (${formatBytes(keys.replica_nbytes ?? 0)} with replicas)`
      ),
      h('span', { class: 'sm-nworkers' }, plural(s.n_workers ?? 0, 'worker')),
      ...present(liveBadge(model))
    );
    pictures.replaceChildren(
      statusBar(counts),
      ...present(workerBytes(s.by_worker))
    );
  }

  function drawRows() {
    const names = model.get('worker_names');
    const rows = model.get('rows').map(r => {
      const holders = r.workers.map(a => names[a] ?? a).sort(byName);
      const died = (r.died ?? []).map(a => names[a] ?? a).sort(byName);
      return h(
        'tr',
        { 'data-key': r.key, 'data-status': r.status },
        h('td', { class: 'sm-name' }, r.name ?? ''),
        h('td', { class: 'sm-key', title: r.key }, r.key),
        h('td', { class: 'sm-type' }, r.type ?? ''),
        h(
          'td',
          {
            class: 'sm-size',
            title: r.nbytes === null ? '' : `${r.nbytes} bytes`
          },
          formatBytes(r.nbytes)
        ),
        h('td', {}, statusBadge(r.status)),
        h(
          'td',
          {
            class: 'sm-workers',
            'data-replicas': String(holders.length),
            title: r.workers.join('\n')
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
        ),
        h('td', { class: 'sm-replicas sm-num' }, String(holders.length))
      );
    });
    tbody.replaceChildren(...rows);
  }

  function drawPager() {
    const size = model.get('page_size');
    const page = model.get('page');
    const n = model.get('n_matching');
    const pages = Math.max(1, Math.ceil(n / size));
    const first = n ? page * size + 1 : 0;
    const last = Math.min(n, (page + 1) * size);
    const select = h(
      'select',
      { class: 'sm-page-size', title: 'rows per page' },
      ...PAGE_SIZES.map(p => {
        const option = h('option', { value: String(p) }, `${p} / page`);
        option.selected = p === size;
        return option;
      })
    );
    select.onchange = () => send({ page_size: Number(select.value), page: 0 });
    const button = (label, target, enabled, cls) => {
      const b = h(
        'button',
        { class: `sm-page-btn ${cls}`, title: label },
        label
      );
      b.disabled = !enabled;
      b.onclick = () => send({ page: target });
      return b;
    };
    pager.replaceChildren(
      button('«', 0, page > 0, 'sm-first'),
      button('‹', page - 1, page > 0, 'sm-prev'),
      h(
        'span',
        { class: 'sm-page-label' },
        `${first}–${last} of ${n} · page ${page + 1} / ${pages}`
      ),
      button('›', page + 1, page + 1 < pages, 'sm-next'),
      button('»', pages - 1, page + 1 < pages, 'sm-last'),
      select
    );
    pager.hidden =
      n <= PAGE_SIZES[0] && size >= n && !model.get('status_filter');
  }

  drawSummary();
  drawRows();
  drawPager();
  return listen(model, [
    ['change:summary', drawSummary],
    ['change:status_filter', drawSummary],
    ['change:live', drawSummary],
    ['change:not_live_reason', drawSummary],
    ['change:rows', drawRows],
    ['change:worker_names', drawRows],
    ['change:page', drawPager],
    ['change:page_size', drawPager],
    ['change:n_matching', drawPager],
    ['change:status_filter', drawPager]
  ]);
}

const CLUSTER_STATUSES = ['running', 'finished'];

function holdsText(holds) {
  return (holds ?? [])
    .map(([name, n]) => (n > 1 ? `${name} ×${n}` : name))
    .join(', ');
}

function renderCluster(model, el) {
  const summary = h('div', { class: 'sm-summary' });
  const tbody = h('tbody');
  const tfoot = h('tfoot');
  const table = h(
    'table',
    { class: 'sm-table' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...[
          ['worker', 'its address below its name'],
          ['threads', ''],
          [
            'memory',
            'data held (bar) against the limit; process memory (tick)'
          ],
          ['last 5 min', 'data held (filled) and process memory (dashed)'],
          ['keys', 'keys held: each replica counts on its worker'],
          ['keys by status', ''],
          ['holds', '']
        ].map(([c, title]) => h('th', { title: title || null }, c))
      )
    ),
    tbody,
    tfoot
  );
  const stream = h('div', { class: 'sm-taskstream-box' });
  el.append(
    h(
      'div',
      { class: 'sm-widget sm-cluster' },
      summary,
      h('div', { class: 'sm-scroll' }, table),
      stream
    )
  );

  function draw() {
    const t = model.get('totals');
    const keys = t.keys ?? {};
    const departed = t.departed ?? [];
    const history = new Map(
      (model.get('history').workers ?? []).map(w => [w.address, w])
    );
    summary.replaceChildren(
      h('b', {}, plural(t.n_workers ?? 0, 'worker')),
      h('span', {}, plural(t.nthreads ?? 0, 'thread')),
      h('span', { class: 'sm-keys-phrase' }, keysPhrase(keys)),
      ...STATUSES.filter(s => (keys.by_status ?? {})[s]).map(s => {
        const badge = statusBadge(s);
        badge.append(` ${keys.by_status[s]}`);
        return badge;
      }),
      ...(t.shared_memory
        ? [h('span', { class: 'sm-shm' }, t.shared_memory)]
        : []),
      ...present(
        departed.length
          ? h(
              'span',
              { class: 'sm-departed', title: 'workers that left or died' },
              `${departed.join(', ')} left`
            )
          : null,
        liveBadge(model)
      ),
      ...(t.notice ? [h('div', { class: 'sm-notice' }, t.notice)] : [])
    );
    tbody.replaceChildren(
      ...model
        .get('workers')
        .map(w =>
          h(
            'tr',
            { 'data-worker': w.name },
            h(
              'td',
              { class: 'sm-name', title: w.note ?? '' },
              w.name,
              h('div', { class: 'sm-address', title: w.address }, w.address),
              ...workerNote(w)
            ),
            h('td', { class: 'sm-num' }, String(w.nthreads)),
            h('td', { class: 'sm-memory' }, memoryBar(w)),
            h('td', {}, timeline(history.get(w.address))),
            h('td', { class: 'sm-num' }, String(w.nkeys)),
            h(
              'td',
              {},
              statusBar(
                w.by_status ?? {},
                CLUSTER_STATUSES,
                'sm-statusbar sm-statusbar-small'
              )
            ),
            h(
              'td',
              { class: 'sm-holds', title: holdsText(w.holds) },
              holdsText(w.holds)
            )
          )
        )
    );
    tfoot.replaceChildren(
      h(
        'tr',
        {},
        h('td', {}, 'all workers'),
        h('td', { class: 'sm-num' }, String(t.nthreads ?? 0)),
        h(
          'td',
          { class: 'sm-memory' },
          memoryBar({
            memory: t.memory ?? 0,
            nbytes: t.nbytes ?? 0,
            memory_limit: t.memory_limit ?? 0
          })
        ),
        h('td', {}),
        h(
          'td',
          {
            class: 'sm-num',
            title:
              'replicas the workers hold (the sum of the column); the headline counts distinct keys'
          },
          String(keys.replicas ?? 0)
        ),
        h(
          'td',
          {},
          statusBar(
            keys.by_status ?? {},
            BAR_STATUSES,
            'sm-statusbar sm-statusbar-small'
          )
        ),
        h('td', {})
      )
    );
  }

  // Redrawn every second while shown, so the last minute keeps moving when nothing runs.
  let offset = 0; // the workers' clock minus this page's
  function drawTasks() {
    if (!model.get('show_tasks')) {
      stream.replaceChildren();
      return;
    }
    const answer = model.get('tasks');
    // Departed workers keep their names (the history has them): their lanes stay named.
    const names = Object.fromEntries(
      [...(model.get('history').workers ?? []), ...model.get('workers')].map(
        w => [w.address, w.name]
      )
    );
    const width = Math.max(320, Math.min(1100, el.clientWidth - 24));
    const now = Date.now() / 1000 + offset;
    const shown = answer.total > (answer.tasks ?? []).length;
    stream.replaceChildren(
      h(
        'div',
        { class: 'sm-taskstream-title' },
        h('b', {}, 'Task stream'),
        ` · last minute${shown ? ` · newest ${answer.tasks.length} of ${answer.total} shown` : ''}`
      ),
      taskStream(answer.tasks ?? [], now, names, { width })
    );
  }
  function tasksArrived() {
    const now = model.get('tasks').now;
    offset = now ? now - Date.now() / 1000 : 0;
    drawTasks();
  }
  const ticker = setInterval(drawTasks, 1000);

  // A replacement says whom it replaced and how that one ended; a frozen worker says so.
  function workerNote(w) {
    const notes = [
      w.status && w.status !== 'running' ? w.status : '',
      w.note ?? ''
    ].filter(Boolean);
    return notes.length
      ? [h('div', { class: 'sm-note' }, notes.join('; '))]
      : [];
  }

  draw();
  tasksArrived();
  const stop = listen(model, [
    ['change:workers', draw],
    ['change:totals', draw],
    ['change:history', draw],
    ['change:live', draw],
    ['change:not_live_reason', draw],
    ['change:tasks', tasksArrived],
    ['change:show_tasks', drawTasks]
  ]);
  return () => {
    clearInterval(ticker);
    stop();
  };
}

function render({ model, el }) {
  return model.get('kind') === 'cluster'
    ? renderCluster(model, el)
    : renderFutures(model, el);
}

export default { render };
