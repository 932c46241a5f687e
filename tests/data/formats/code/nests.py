"""Heron colony counts."""


def count_nests(sightings):
    """Nests counted at one site, after removing the ones seen twice."""
    seen = set()
    total = 0

    for nest_id in sightings:
        if nest_id not in seen:
            seen.add(nest_id)
            total += 1
    return total


def fledging_rate(nests, fledged):
    """The share of nests that fledged at least one chick."""
    if nests == 0:
        return 0.0

    rate = fledged / nests
    return min(max(rate, 0.0), 1.0)


class Report:
    """A line for the season's report."""

    def line(self, site, nests, rate):
        percent = round(rate * 100)

        return f"{site}: {nests} nests, {percent}% fledged (boardwalk survey)"
