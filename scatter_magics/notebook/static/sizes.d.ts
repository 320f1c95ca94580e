// Types of sizes.js, for the labextension's TypeScript (the file itself is plain
// JavaScript: the notebook widget loads it with no build step).

/** The units formatBytes writes, 1024 apart. */
export declare const UNITS: readonly string[];

/** Bytes as scatter_magics.sizes.format_bytes writes them: `1536` → `"1.5 KiB"`. */
export declare function formatBytes(n: number | null | undefined): string;
