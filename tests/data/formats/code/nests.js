// Heron colony counts.

export function countNests(sightings) {
  const seen = new Set();
  let total = 0;

  for (const id of sightings) {
    if (!seen.has(id)) {
      seen.add(id);
      total += 1;
    }
  }
  return total;
}

export function fledgingRate(nests, fledged) {
  if (nests === 0) {
    return 0;
  }

  const rate = fledged / nests;
  return Math.min(Math.max(rate, 0), 1);
}

export function reportLine(site, nests, rate) {
  const percent = Math.round(rate * 100);

  return `${site}: ${nests} nests, ${percent}% fledged (boardwalk survey)`;
}
