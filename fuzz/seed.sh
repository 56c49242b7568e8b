#!/bin/sh
# Fills the seed corpora from the shared filter fixtures: one file per filter, named by the
# SHA-1 of its text as libFuzzer names corpus entries. Needs jq and sha1sum. Running it again
# adds nothing new, because equal filters get equal names.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fixtures=${FIXTURES:-$here/../../shared/fixtures}

# Writes each line of standard input, with JSON escapes decoded, to its own file in $1.
write_entries() {
    mkdir -p "$1"
    while IFS= read -r encoded; do
        file=$(mktemp)
        printf '%s' "$encoded" | jq -j '.' >"$file"
        name=$(sha1sum "$file" | cut -d' ' -f1)
        mv "$file" "$1/$name"
    done
    echo "$1: $(find "$1" -type f | wc -l) files"
}

for source in audit-logs/parse-corpus.jsonl audit-logs/lql-cases.jsonl \
    audit-logs/pubsub-filter-cases.json; do
    if [ ! -f "$fixtures/$source" ]; then
        echo "fixture $fixtures/$source not found: set FIXTURES to the folder that contains audit-logs/" >&2
        exit 1
    fi
done

# `jq -c` prints each filter as a JSON string until write_entries decodes it, so that a filter
# with a newline still travels as one line.
jq -c '.filter | select(type == "string")' \
    "$fixtures/audit-logs/parse-corpus.jsonl" "$fixtures/audit-logs/lql-cases.jsonl" |
    write_entries "$here/corpus/lql_filter"

# Every "filter" string anywhere in the Pub/Sub cases, valid or not, plus the list of valid
# filters from the documentation.
jq -c '[(.. | objects | .filter? | strings), (.doc_valid[]? | strings)] | .[]' \
    "$fixtures/audit-logs/pubsub-filter-cases.json" |
    write_entries "$here/corpus/pubsub_filter"
