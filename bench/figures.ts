// Small helpers the benchmarks share for reducing repeated measurements to the figure they print.

/** The median of `xs` (the upper one of the two middle values for an even count); `xs` is not changed. */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
