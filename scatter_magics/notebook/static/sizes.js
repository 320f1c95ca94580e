// Sizes in bytes, written as scatter_magics/sizes.py's format_bytes writes them:
// binary units spelled KiB, MiB, GiB. tests/test_sizes.py runs this file with node
// and checks it against the Python formatter, value for value.
//
// One source for both front ends: the notebook widget gets it pasted into its ESM
// (scatter_magics/notebook/esm.py), the labextension imports it (types in sizes.d.ts).

export const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * A short size: whole bytes, else three significant digits under 100, else an integer.
 * `1536` → `"1.5 KiB"`, `150 * 2 ** 20` → `"150 MiB"`, `null` → `""`.
 */
export function formatBytes(n) {
  if (n === null || n === undefined) {
    return '';
  }
  let size = Number(n);
  let unit = 0;
  while (Math.abs(size) >= 1024 && unit < UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  if (unit === 0) {
    return `${Math.trunc(size)} B`; // Python's int(): towards zero (and never "-0")
  }
  if (Math.abs(size) >= 100) {
    return `${fixed(size, 0)} ${UNITS[unit]}`;
  }
  // Python's "{:.3g}": three significant digits (1 <= |size| < 100 here), then
  // trailing zeros and a bare point dropped ("1.50" → "1.5", "10.0" → "10").
  const [whole, fraction] = fixed(size, Math.abs(size) < 10 ? 2 : 1).split('.');
  const kept = fraction.replace(/0+$/, '');
  return `${kept ? `${whole}.${kept}` : whole} ${UNITS[unit]}`;
}

/**
 * `x` with `digits` decimals as Python's `format(x, f".{digits}f")` writes it, for
 * |x| >= 1. Both round the exact binary value correctly; they differ only on an exact
 * tie, where Python rounds half to even (1.125 → "1.12") and `toFixed` away from zero
 * ("1.13"), so a tie is settled here.
 */
function fixed(x, digits) {
  const sign = x < 0 ? '-' : '';
  const abs = Math.abs(x);
  if (Number.isInteger(abs)) {
    // toFixed writes 1e21 and above in exponent form; BigInt writes every digit.
    const point = digits ? `.${'0'.repeat(digits)}` : '';
    return `${sign}${BigInt(abs)}${point}`;
  }
  // A double >= 1 has at most 52 binary digits after the point, so at most 52 decimal
  // ones: 100 decimals (toFixed's maximum) write it exactly.
  const exact = abs.toFixed(100);
  const point = exact.indexOf('.');
  const kept = exact.slice(0, digits ? point + 1 + digits : point);
  const rest = exact.slice(point + 1 + digits);
  const even = Number(kept.slice(-1)) % 2 === 0;
  return sign + (/^50*$/.test(rest) && even ? kept : abs.toFixed(digits));
}
