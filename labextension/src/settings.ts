/** What the New cluster dialog proposes (schema/plugin.json, `newCluster`). */
export interface INewCluster {
  nWorkers: number;
  threadsPerWorker: number;
  memoryLimit: string;
}

/** The extension's settings (schema/plugin.json), with the schema's defaults. */
export interface ISettings {
  pollInterval: number;
  pageSize: number;
  newCluster: INewCluster;
}

export const DEFAULTS: ISettings = {
  pollInterval: 1000,
  pageSize: 50,
  newCluster: { nWorkers: 2, threadsPerWorker: 1, memoryLimit: 'auto' }
};

/**
 * The settings from the registry's composite (or the defaults where it has none:
 * Notebook 7 without a settings registry, or a value the schema would refuse).
 */
export function readSettings(
  composite: { readonly [name: string]: unknown } | null
): ISettings {
  const number = (value: unknown, fallback: number) =>
    typeof value === 'number' && Number.isFinite(value) && value > 0
      ? value
      : fallback;
  const cluster = (composite?.newCluster ?? {}) as Partial<INewCluster>;
  return {
    pollInterval: number(composite?.pollInterval, DEFAULTS.pollInterval),
    pageSize: number(composite?.pageSize, DEFAULTS.pageSize),
    newCluster: {
      nWorkers: number(cluster.nWorkers, DEFAULTS.newCluster.nWorkers),
      threadsPerWorker: number(
        cluster.threadsPerWorker,
        DEFAULTS.newCluster.threadsPerWorker
      ),
      memoryLimit:
        typeof cluster.memoryLimit === 'string' && cluster.memoryLimit.trim()
          ? cluster.memoryLimit.trim()
          : DEFAULTS.newCluster.memoryLimit
    }
  };
}
