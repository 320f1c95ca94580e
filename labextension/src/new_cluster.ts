import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { INewCluster } from './settings';

/** What `POST clusters` takes (docs/internals.md, "The REST contract"). */
export interface IStartOptions {
  n_workers: number;
  threads_per_worker: number;
  memory_limit: string | number;
}

/**
 * The New cluster dialog's form: workers, threads per worker and a memory limit per
 * worker, proposed from the settings. The server checks the values and says what was
 * wrong (a 400 with a message) if it refuses them.
 */
export class NewClusterForm
  extends Widget
  implements Dialog.IBodyWidget<IStartOptions>
{
  constructor(defaults: INewCluster) {
    super();
    this.addClass('sm-lab-new-cluster');
    const field = (label: string, input: HTMLInputElement, hint: string) =>
      h(
        'label',
        { class: 'sm-lab-field' },
        h('span', {}, label),
        input,
        h('small', {}, hint)
      );
    this._workers = number('n_workers', defaults.nWorkers);
    this._threads = number('threads_per_worker', defaults.threadsPerWorker);
    this._memory = h('input', {
      name: 'memory_limit',
      type: 'text',
      value: defaults.memoryLimit,
      spellcheck: 'false'
    }) as HTMLInputElement;
    this.node.append(
      field('Workers', this._workers, 'worker processes, 1 to 256'),
      field(
        'Threads per worker',
        this._threads,
        'tasks each worker runs at once'
      ),
      field(
        'Memory limit per worker',
        this._memory,
        '"auto" (the machine\u2019s memory shared by the workers), or e.g. 2GiB'
      )
    );
  }

  getValue(): IStartOptions {
    const memory = this._memory.value.trim() || 'auto';
    return {
      n_workers: Math.round(Number(this._workers.value)),
      threads_per_worker: Math.round(Number(this._threads.value)),
      memory_limit: /^\d+$/.test(memory) ? Number(memory) : memory
    };
  }

  private _workers: HTMLInputElement;
  private _threads: HTMLInputElement;
  private _memory: HTMLInputElement;
}

function number(name: string, value: number): HTMLInputElement {
  return h('input', {
    name,
    type: 'number',
    min: '1',
    max: '256',
    step: '1',
    value: String(value)
  }) as HTMLInputElement;
}
