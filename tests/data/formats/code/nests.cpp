// Heron colony counts.
#include <algorithm>
#include <string>
#include <unordered_set>
#include <vector>

namespace colony {

// Nests counted at one site, after removing the ones seen twice.
int count_nests(const std::vector<int>& sightings) {
    std::unordered_set<int> seen;
    int total = 0;

    for (int id : sightings) {
        if (seen.insert(id).second) {
            ++total;
        }
    }
    return total;
}

// The share of nests that fledged at least one chick.
double fledging_rate(int nests, int fledged) {
    if (nests == 0) {
        return 0.0;
    }

    double rate = static_cast<double>(fledged) / nests;
    return std::clamp(rate, 0.0, 1.0);
}

// A line for the season's report.
std::string report_line(const std::string& site, int nests, double rate) {
    int percent = static_cast<int>(rate * 100.0 + 0.5);

    return site + ": " + std::to_string(nests) + " nests, " + std::to_string(percent) + "% fledged";
}

}  // namespace colony
