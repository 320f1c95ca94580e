import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ICluster, PolledResource } from './model';
import { API_PATH } from './request';

/** First wait before reopening a closed push channel; doubles up to `RETRY_MAX`. */
export const RETRY_MIN = 2000;
export const RETRY_MAX = 60000;

/**
 * The cluster listing pushed by the server over `clusters/ws` (docs/internals.md, "The
 * REST contract"): each message is the whole listing of `GET clusters`, sent when it
 * changed. While the socket is open the resource's once-a-second poll is stopped; when it
 * closes or cannot open, the poll resumes (the fallback) and the socket is tried again
 * later, so a proxy that refuses websockets costs only the poll it always cost.
 */
export class ListingPush {
  constructor(private readonly clusters: PolledResource<ICluster[]>) {
    this._open();
  }

  /** True while the server pushes (the poll is stopped). */
  get pushing(): boolean {
    return this._pushing;
  }

  dispose(): void {
    this._disposed = true;
    window.clearTimeout(this._retry);
    this._socket?.close();
    this._socket = null;
  }

  private _open(): void {
    if (this._disposed) {
      return;
    }
    const settings = ServerConnection.makeSettings();
    let url = URLExt.join(settings.wsUrl, API_PATH, 'clusters', 'ws');
    if (settings.appendToken && settings.token) {
      url += `?token=${encodeURIComponent(settings.token)}`;
    }
    let socket: WebSocket;
    try {
      socket = new settings.WebSocket(url);
    } catch {
      this._fallBack();
      return;
    }
    this._socket = socket;
    socket.onmessage = event => {
      if (!this._pushing) {
        this._pushing = true;
        this._wait = RETRY_MIN;
        void this.clusters.pause();
      }
      try {
        this.clusters.accept(JSON.parse(event.data as string) as ICluster[]);
      } catch (error) {
        console.warn('scatter-magics: an unreadable listing was pushed', error);
      }
    };
    socket.onclose = () => {
      if (this._socket === socket) {
        this._socket = null;
        this._fallBack();
      }
    };
  }

  private _fallBack(): void {
    if (this._disposed) {
      return;
    }
    this._pushing = false;
    void this.clusters.resume();
    this._retry = window.setTimeout(() => this._open(), this._wait);
    this._wait = Math.min(this._wait * 2, RETRY_MAX);
  }

  private _socket: WebSocket | null = null;
  private _pushing = false;
  private _disposed = false;
  private _retry = 0;
  private _wait = RETRY_MIN;
}
