// Package colony counts heron nests.
package colony

import "fmt"

// CountNests counts nests at one site, after removing the ones seen twice.
func CountNests(sightings []int) int {
	seen := map[int]bool{}
	total := 0

	for _, id := range sightings {
		if !seen[id] {
			seen[id] = true
			total++
		}
	}
	return total
}

// FledgingRate is the share of nests that fledged at least one chick.
func FledgingRate(nests, fledged int) float64 {
	if nests == 0 {
		return 0
	}

	rate := float64(fledged) / float64(nests)
	return min(max(rate, 0), 1)
}

// ReportLine is a line for the season's report.
func ReportLine(site string, nests int, rate float64) string {
	percent := int(rate*100 + 0.5)

	return fmt.Sprintf("%s: %d nests, %d%% fledged (boardwalk survey)", site, nests, percent)
}
