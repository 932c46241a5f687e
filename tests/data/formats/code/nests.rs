//! Heron colony counts.

/// Nests counted at one site, after removing the ones seen twice.
pub fn count_nests(sightings: &[u32]) -> u32 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;

    for id in sightings {
        if seen.insert(*id) {
            total += 1;
        }
    }
    total
}

/// The share of nests that fledged at least one chick.
pub fn fledging_rate(nests: u32, fledged: u32) -> f64 {
    if nests == 0 {
        return 0.0;
    }

    let rate = f64::from(fledged) / f64::from(nests);
    rate.clamp(0.0, 1.0)
}

/// A line for the season's report.
pub fn report_line(site: &str, nests: u32, rate: f64) -> String {
    let percent = (rate * 100.0).round();

    format!("{site}: {nests} nests, {percent}% fledged (boardwalk survey)")
}
