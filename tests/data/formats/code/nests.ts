// Heron colony counts.

export function countNests(sightings: number[]): number {
  const seen = new Set<number>();
  let total = 0;

  for (const id of sightings) {
    if (!seen.has(id)) {
      seen.add(id);
      total += 1;
    }
  }
  return total;
}

export function fledgingRate(nests: number, fledged: number): number {
  if (nests === 0) {
    return 0;
  }

  const rate: number = fledged / nests;
  return Math.min(Math.max(rate, 0), 1);
}

export interface Site {
  name: string;
  nests: number;

  /** The share of nests that fledged at least one chick. */
  rate: number;
  observer?: string;
}
