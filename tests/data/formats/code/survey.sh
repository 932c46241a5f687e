#!/bin/sh
# Heron colony counts from the boardwalk survey sheets.
set -eu

count_nests() {
    sheet=$1
    total=0

    for id in $(cut -d, -f2 "$sheet" | sort -u); do
        [ -n "$id" ] && total=$((total + 1))
    done
    echo "$total"
}

fledging_rate() {
    nests=$1
    fledged=$2
    if [ "$nests" -eq 0 ]; then
        echo 0
        return
    fi

    echo $((fledged * 100 / nests))
}

for sheet in sheets/*.csv; do
    echo "$(basename "$sheet" .csv): $(count_nests "$sheet") nests"
done
