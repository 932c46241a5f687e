/* Heron colony counts. */
#include <stdio.h>

/* Nests counted at one site, after removing the ones seen twice. */
int count_nests(const int *sightings, int n, int max_id)
{
    int seen[1024] = {0};
    int total = 0;

    for (int i = 0; i < n; i++) {
        if (sightings[i] < max_id && !seen[sightings[i]]) {
            seen[sightings[i]] = 1;
            total++;
        }
    }
    return total;
}

/* The share of nests that fledged at least one chick. */
double fledging_rate(int nests, int fledged)
{
    if (nests == 0)
        return 0.0;

    double rate = (double)fledged / nests;
    return rate < 0.0 ? 0.0 : rate > 1.0 ? 1.0 : rate;
}

/* A line for the season's report. */
void report_line(char *out, size_t len, const char *site, int nests, double rate)
{
    int percent = (int)(rate * 100.0 + 0.5);

    snprintf(out, len, "%s: %d nests, %d%% fledged (boardwalk survey)", site, nests, percent);
}
