import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { IKeys } from '../../scatter_magics/notebook/static/dom.js';
import type {
  ISeries,
  ITask
} from '../../scatter_magics/notebook/static/plots.js';

import { requestAPI } from './request';

/** One worker, as `GET /scatter-magics/api/clusters` describes it (summary.py). */
export interface IWorker {
  address: string;
  name: string;
  nthreads: number;
  memory_limit: number;
  /** The process's resident memory, to the MiB. */
  memory: number;
  /** Keys it holds, and their bytes (shared-memory data it maps included). */
  nkeys: number;
  nbytes: number;
  by_status?: { [status: string]: number };
  status?: string;
}

/** One key (a future's data) in `GET clusters/<id>` (key_pages.py). */
export interface IKeyItem {
  key: string;
  name: string;
  status: string;
  nbytes: number | null;
  size: number | null;
  type: string | null;
  workers: string[];
  /** Workers that died while holding it (a lost key's note). */
  died: string[];
}

/** A cluster's memory over time (history.py): a sample per entry of `times`. */
export interface IHistory {
  interval: number;
  times: number[];
  workers: ISeries[];
}

/** `GET clusters/<id>/tasks?since=` (task_stream.py). */
export interface ITasksAnswer {
  index: number;
  now: number | null;
  tasks: ITask[];
}

/** A published dataset: it belongs to the cluster and outlives any kernel. */
export interface IDataset {
  name: string;
  nbytes: number | null;
  workers: string[];
}

/** A kernel connected to a cluster (`%cluster connect`), named by its notebook. */
export interface IConnection {
  id: string;
  kernel_id: string | null;
  name: string;
}

/** One registered cluster (docs/internals.md, "The REST contract"). */
export interface ICluster {
  id: string;
  name: string;
  kernel_id: string | null;
  backend: string;
  scheduler_address: string;
  pid: number;
  started: number;
  server_owned: boolean;
  /** Only kernels' connections know it (a remote Dask scheduler): not stopped here. */
  remote?: boolean;
  /** The kernels connected to it with `%cluster connect` (their notebooks). */
  connected?: IConnection[];
  /** A Dask scheduler's dashboard, when it has one. */
  dashboard_link?: string | null;
  status: string;
  error?: string;
  workers: IWorker[];
  datasets?: IDataset[];
  keys: IKeys & {
    /** Distinct value names: the pieces of a split value (`df[0/4]` …) count once. */
    names?: number;
    total?: number;
    offset?: number;
    limit?: number;
    items?: IKeyItem[];
  };
  totals: {
    n_workers: number;
    nthreads: number;
    memory: number;
    memory_limit: number;
    nbytes: number;
  };
  history: IHistory;
}

/** How often an open view asks the server by default: once a second. */
export const POLL_INTERVAL = 1000;

/**
 * A resource of the REST API polled while someone shows it (once a second unless the
 * settings say otherwise), with the ETag of the last answer, so that an unchanged answer
 * is a 304 and no re-render.
 */
export class PolledResource<T> {
  constructor(
    private readonly endPoint: () => string,
    interval = POLL_INTERVAL
  ) {
    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval, backoff: true, max: 30 * interval },
      standby: 'when-hidden'
    });
  }

  /** Poll every `interval` ms from now on (a changed setting). */
  set interval(interval: number) {
    this._poll.frequency = { interval, backoff: true, max: 30 * interval };
  }

  get changed(): ISignal<this, T> {
    return this._changed;
  }

  get failed(): ISignal<this, Error> {
    return this._failed;
  }

  get value(): T | null {
    return this._value;
  }

  /** Ask now (after an action), instead of at the next tick. */
  async refresh(): Promise<void> {
    const endPoint = this.endPoint();
    if (endPoint !== this._lastEndPoint) {
      this._etag = null; // another page or filter: the old ETag says nothing about it
      this._lastEndPoint = endPoint;
    }
    try {
      const reply = await requestAPI<T>(endPoint, {}, this._etag);
      if (endPoint !== this.endPoint()) {
        return; // asked for another page or filter meanwhile: this answer is stale
      }
      if (!reply.unchanged && reply.data !== null) {
        this._etag = reply.etag;
        this._value = reply.data;
        this._changed.emit(reply.data);
      }
    } catch (error) {
      this._failed.emit(error as Error);
      throw error; // the poll backs off
    }
  }

  /**
   * Take a value pushed by the server (`clusters/ws`) as if a poll had brought it. The
   * ETag is dropped: the next poll, if polling resumes, gets a full answer.
   */
  accept(value: T): void {
    this._etag = null;
    this._value = value;
    this._changed.emit(value);
  }

  /** Stop polling while the server pushes; `resume` polls again (the fallback). */
  async pause(): Promise<void> {
    await this._poll.stop();
  }

  async resume(): Promise<void> {
    await this._poll.start();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _poll: Poll;
  private _etag: string | null = null;
  private _lastEndPoint = '';
  private _value: T | null = null;
  private _changed = new Signal<this, T>(this);
  private _failed = new Signal<this, Error>(this);
}
