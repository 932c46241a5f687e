package colony;

import java.util.HashSet;
import java.util.Set;

/** Heron colony counts. */
public final class Nests {
    /** Nests counted at one site, after removing the ones seen twice. */
    public static int countNests(int[] sightings) {
        Set<Integer> seen = new HashSet<>();
        int total = 0;

        for (int id : sightings) {
            if (seen.add(id)) {
                total += 1;
            }
        }
        return total;
    }

    /** The share of nests that fledged at least one chick. */
    public static double fledgingRate(int nests, int fledged) {
        if (nests == 0) {
            return 0.0;
        }

        double rate = (double) fledged / nests;
        return Math.min(Math.max(rate, 0.0), 1.0);
    }
}
