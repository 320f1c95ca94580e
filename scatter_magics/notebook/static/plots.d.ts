// Types of plots.js, for the labextension's TypeScript (the file itself is plain
// JavaScript: the notebook widget loads it with no build step).

/** The colours of functions' bars; transfers and errors have their own. */
export declare const PALETTE: readonly string[];
export declare const TRANSFER: string;
export declare const ERROR: string;

/** One worker of a history answer (scatter_magics/history.py). */
export interface ISeries {
  address: string;
  name: string;
  memory: (number | null)[];
  nbytes: (number | null)[];
}

/** One record of the task stream (scatter_magics/task_stream.py). */
export interface ITask {
  key: string;
  name: string;
  worker: string;
  thread: number | string | null;
  start: number;
  stop: number;
  status: string;
  transfers: {
    start: number;
    stop: number;
    from: string | null;
    nbytes: number | null;
  }[];
}

/** A function's colour, as plots_html.name_colour computes it. */
export declare function nameColour(name: string): string;

/** A worker's data held (filled) and process memory (dashed) over time. */
export declare function timeline(
  series: ISeries | undefined,
  width?: number,
  height?: number
): SVGSVGElement;

/** One lane per worker thread, in worker-name order. */
export declare function taskLanes(
  tasks: ITask[],
  names: { [address: string]: string }
): [string, number | string | null][];

/** The task stream of the last `span` s up to `now`, with its legend. */
export declare function taskStream(
  tasks: ITask[],
  now: number,
  names: { [address: string]: string },
  options?: { span?: number; width?: number }
): HTMLElement;

/** The seconds a task stream spans: 5 s to `span`, enough for the oldest task shown. */
export declare function shownSpan(
  tasks: ITask[],
  now: number,
  span?: number
): number;
