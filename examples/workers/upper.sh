#!/bin/sh
# millrace exec worker in POSIX sh + awk (no jq): upper-cases every string in the value
# (object keys are kept as they are; escapes such as \n and \u00e9 are left alone;
# non-ASCII letters are left alone).
#
#   in:  {"id":7,"value":{"name":"bo","tags":["a\nb"]},"key":null,...}
#   out: {"id":7,"value":{"name":"BO","tags":["A\nB"]},"key":null,...}
#
# It answers with the protocol's "value" shorthand: a reply object with the request's
# id and a "value" field is one output, so the worker just rewrites the request line
# and echoes it (upper-casing the topic and key as well is harmless: millrace only
# reads id and value from the reply). No field extraction, so no JSON parser needed.
#
# One awk process per item keeps the I/O simple and unbuffered (sh's read takes exactly
# one line; printf writes straight to the pipe). Fine for a demo; use a real language
# for throughput.
LC_ALL=C
export LC_ALL

while IFS= read -r line; do
    case $line in
        *[!\ \	]*) ;;
        *) continue ;; # blank line
    esac
    printf '%s\n' "$line" | awk '
function upper(s,   r, t, m, ch) {
    # Upper-case one JSON string literal, copying escape sequences verbatim.
    r = ""; t = 1; m = length(s)
    while (t <= m) {
        ch = substr(s, t, 1)
        if (ch == "\\") {
            if (substr(s, t + 1, 1) == "u") { r = r substr(s, t, 6); t += 6 }
            else { r = r substr(s, t, 2); t += 2 }
            continue
        }
        r = r toupper(ch); t++
    }
    return r
}
{
    s = $0; n = length(s); out = ""; i = 1
    while (i <= n) {
        c = substr(s, i, 1)
        if (c != "\"") { out = out c; i++; continue }
        # find the closing quote of the string starting at i
        j = i + 1
        while (j <= n) {
            d = substr(s, j, 1)
            if (d == "\\") { j += 2; continue }
            if (d == "\"") break
            j++
        }
        str = substr(s, i, j - i + 1)
        # a string followed by ":" is an object key: keep it
        k = j + 1
        while (k <= n && (substr(s, k, 1) == " " || substr(s, k, 1) == "\t")) k++
        if (substr(s, k, 1) != ":") str = upper(str)
        out = out str
        i = j + 1
    }
    print out
}'
done
