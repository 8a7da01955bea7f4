import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The URL namespace of the jupyter-features server extension. */
export const NAMESPACE = 'jupyter-features';

/**
 * Call the server extension at /jupyter-features/<endPoint>.
 *
 * Resolves with the JSON body; rejects with an Error whose message is the
 * server's own (it names the registry and what to do), or a network error.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(serverSettings.baseUrl, NAMESPACE, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, serverSettings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      console.warn('jupyter-features: not a JSON response body', response);
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data === 'object' && data.message) ||
      `the Jupyter server answered ${response.status} ${response.statusText} for ${url}`;
    throw new ServerConnection.ResponseError(response, message);
  }
  return data as T;
}

/** "?key=value&…" from the set (non-empty) entries of `params`, or "". */
export function queryString(params: Record<string, string | null | undefined>): string {
  const set: Record<string, string> = {};
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') {
      set[key] = value;
    }
  }
  return URLExt.objectToQueryString(set);
}
