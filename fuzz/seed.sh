#!/bin/sh
# Fills the seed corpora of the text targets from the shared fixtures and the demo data: one
# file per input, named by its SHA-1 as libFuzzer names corpus entries. Needs jq and sha1sum.
# Running it again adds nothing new, because equal inputs get equal names. The images of
# `thumbnail_image` come from seed-images.py instead.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fixtures=${FIXTURES:-$here/../../shared/fixtures}
demo=$here/../demo

# Writes each line of standard input, a JSON string, decoded to its own file in $1.
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
    audit-logs/pubsub-filter-cases.json audit-logs/entries.jsonl \
    audit-logs/gcs-notifications/messages.jsonl conformance/events/generate/data; do
    if [ ! -e "$fixtures/$source" ]; then
        echo "fixture $fixtures/$source not found: set FIXTURES to the folder that contains audit-logs/" >&2
        exit 1
    fi
done

# `jq -c` prints each input as a JSON string until write_entries decodes it, so that an input
# with a newline still travels as one line.
jq -c '.filter | select(type == "string")' \
    "$fixtures/audit-logs/parse-corpus.jsonl" "$fixtures/audit-logs/lql-cases.jsonl" |
    write_entries "$here/corpus/lql_filter"

# Every "filter" string anywhere in the Pub/Sub cases, valid or not, plus the list of valid
# filters from the documentation.
jq -c '[(.. | objects | .filter? | strings), (.doc_valid[]? | strings)] | .[]' \
    "$fixtures/audit-logs/pubsub-filter-cases.json" |
    write_entries "$here/corpus/pubsub_filter"

# Each audit-log entry as one JSON text.
jq -c 'tojson' "$fixtures/audit-logs/entries.jsonl" "$demo/audit-entries.jsonl" |
    write_entries "$here/corpus/log_entry_json"

# Each entry as a REST write body, once with its own logName and resource and once taking
# them from the request.
jq -c '({entries: [.]} | tojson),
    ({logName: .logName, resource: .resource, labels: {source: "seed"},
      partialSuccess: true, entries: [del(.logName, .resource)]} | tojson)' \
    "$fixtures/audit-logs/entries.jsonl" |
    write_entries "$here/corpus/logging_write_request"

# The data of each Cloud Storage notification, and every event of the functions-framework
# conformance set (background events and CloudEvents, inputs and outputs).
jq -c '.message.data | select(type == "string") | @base64d | tojson' \
    "$fixtures/audit-logs/gcs-notifications/messages.jsonl" |
    write_entries "$here/corpus/storage_notification"
jq -c 'tojson' "$fixtures"/conformance/events/generate/data/*.json |
    write_entries "$here/corpus/storage_notification"

# Multipart uploads: the Content-Type line, then the body with CRLF line ends.
multipart() {
    printf 'multipart/related; boundary=%s\n' "$1"
    printf -- "--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n%s\r\n--%s\r\nContent-Type: %s\r\n\r\n%s\r\n--%s--\r\n" \
        "$1" "$2" "$1" "$3" "$4" "$1"
}
for case in 1 2 3; do
    mkdir -p "$here/corpus/multipart_upload"
    file=$(mktemp)
    case $case in
    1) multipart b1 '{"name":"photo.jpg"}' image/jpeg 'JFIF' >"$file" ;;
    2) multipart '"quoted boundary"' '{"name":"a/b.txt","metadata":{"k":"v"},"contentType":"text/plain"}' text/plain 'hello' >"$file" ;;
    3) multipart x '{"name":"sum.bin","crc32c":"AAAAAA==","md5Hash":"1B2M2Y8AsgTpgAmY7PhCfg=="}' application/octet-stream '' >"$file" ;;
    esac
    mv "$file" "$here/corpus/multipart_upload/$(sha1sum "$file" | cut -d' ' -f1)"
done
echo "$here/corpus/multipart_upload: $(find "$here/corpus/multipart_upload" -type f | wc -l) files"
