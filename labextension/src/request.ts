import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where the server extension listens, under the server's base URL. */
export const API_PATH = 'scatter-magics/api';

/** An answer of the REST API: the body, or `unchanged` for a 304 to `etag`. */
export interface IReply<T> {
  data: T | null;
  etag: string | null;
  unchanged: boolean;
}

/**
 * Call the scatter_magics REST API; failures become `ServerConnection.ResponseError`
 * carrying the server's message (its 4xx bodies say what was wrong).
 *
 * @param endPoint path below `/scatter-magics/api/`, e.g. `clusters`
 * @param init fetch options (method, body)
 * @param etag the ETag of the last answer: an unchanged resource costs a 304
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  etag: string | null = null
): Promise<IReply<T>> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, API_PATH, endPoint);
  const headers = new Headers(init.headers);
  if (etag) {
    headers.set('If-None-Match', etag);
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { cache: 'no-store', ...init, headers },
      settings
    );
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  if (response.status === 304) {
    return { data: null, etag, unchanged: true };
  }
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message = data?.message ?? (typeof data === 'string' ? data : '');
    throw new ServerConnection.ResponseError(response, message);
  }
  return {
    data: data as T,
    etag: response.headers.get('Etag'),
    unchanged: false
  };
}
