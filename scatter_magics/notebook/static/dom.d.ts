// Types of dom.js, for the labextension's TypeScript (the file itself is plain
// JavaScript: the notebook widget loads it with no build step).

/** Every status a key can show, in the order the views list them. */
export declare const STATUSES: readonly string[];

export type Child = Node | string | null | undefined;

export type Attributes = {
  [name: string]: string | ((event: Event) => void) | null | undefined;
};

/** `document.createElement` with attributes, `on*` handlers and children. */
export declare function h(
  tag: string,
  attrs?: Attributes,
  ...children: Child[]
): HTMLElement;

/** `plural(1, "key")` is "1 key", `plural(2, "key")` "2 keys". */
export declare function plural(n: number, word: string): string;

/** A status with its glyph ("● finished"), or with a count first ("● 3 finished"). */
export declare function statusBadge(
  status: string,
  count?: number,
  extra?: string
): HTMLElement;

/** What memoryBar reads of a worker. */
export interface IMemory {
  memory: number;
  memory_limit: number;
  nbytes: number;
}

/** A summary's `keys` (scatter_magics/summary.py). */
export interface IKeys {
  count: number;
  by_status: { [status: string]: number };
  nbytes: number;
  replicas: number;
  replica_nbytes: number;
}

/** "3 keys (5 replicas), 2 MiB in memory". */
export declare function keysPhrase(keys: IKeys): string;

/** "data 824 MiB of 11.8 GiB · process 26.6 MiB". */
export declare function memoryPhrase(w: IMemory): string;

/** Data held against the limit (a bar), process memory as a second mark, and words. */
export declare function memoryBar(w: IMemory): HTMLElement;
