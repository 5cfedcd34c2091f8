#!/usr/bin/env bash
# Validates .clusterfuzzlite/build.sh without Docker (docs/fuzzing.md): runs it with SRC
# and OUT in fresh temporary directories (SRC/cowproof a link to this repository) and
# checks, for every target `cargo fuzz list` names:
#   - $OUT/TARGET is an executable libFuzzer binary that replays its whole seed corpus
#     (`-runs=0` executes each input once) with its dictionary loaded and no crash;
#   - $OUT/TARGET_seed_corpus.zip holds exactly the inputs of corpus/TARGET/, byte for
#     byte, and none of its *.md or *.cows notes;
#   - TARGET.dict and TARGET.options are copied when fuzz/ has them, and an options file's
#     `dict =` names a dictionary that is in $OUT;
# and that $OUT holds nothing else. Builds on stable without a sanitizer (`-s none`),
# which the images do not pass (they build with AddressSanitizer on nightly).
# Exit 0 when all holds; otherwise 1 with one line per failed check.
set -euo pipefail
repository="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SRC="$work/src" OUT="$work/out"
mkdir -p "$SRC" "$OUT"
ln -s "$repository" "$SRC/cowproof"

failures=0
fail() {
    echo "check-build: $*" >&2
    failures=$((failures + 1))
}

COWPROOF_FUZZ_BUILD_ARGS="${COWPROOF_FUZZ_BUILD_ARGS:--s none}" \
    "$repository/.clusterfuzzlite/build.sh"

targets=$(cd "$repository/fuzz" && cargo fuzz list | sort)
built_list=$(find "$repository/fuzz/fuzz_targets" -maxdepth 1 -name '*.rs' -printf '%f\n' \
    | sed 's/\.rs$//' | sort)
[ "$targets" = "$built_list" ] \
    || fail "cargo fuzz list [$targets] differs from fuzz_targets/*.rs [$built_list]"
expected_files=()
for target in $targets; do
    binary="$OUT/$target"
    expected_files+=("$target")
    [ -x "$binary" ] || { fail "$target: no executable $binary"; continue; }

    # The seed archive: exactly the inputs, byte for byte.
    seeds="$repository/corpus/$target"
    archive="$OUT/${target}_seed_corpus.zip"
    unpacked="$work/seeds-$target"
    mkdir -p "$unpacked"
    if [ -d "$seeds" ]; then
        expected_files+=("${target}_seed_corpus.zip")
        if [ ! -f "$archive" ]; then
            fail "$target: no seed corpus archive"
        else
            unzip -q "$archive" -d "$unpacked"
            inputs=$(find "$seeds" -maxdepth 1 -type f ! -name '*.md' ! -name '*.cows' \
                -printf '%f\n' | sort)
            archived=$(find "$unpacked" -type f -printf '%f\n' | sort)
            [ -n "$inputs" ] || fail "$target: corpus/$target has no inputs"
            [ "$inputs" = "$archived" ] \
                || fail "$target: the archive holds [$archived], corpus/$target [$inputs]"
            for name in $archived; do
                cmp -s "$seeds/$name" "$unpacked/$name" \
                    || fail "$target: archived $name differs from corpus/$target/$name"
            done
        fi
    fi

    # Dictionary and options: copied when present; an options file's dict is in $OUT.
    dictionary_flag=()
    for extension in dict options; do
        if [ -f "$repository/fuzz/$target.$extension" ]; then
            expected_files+=("$target.$extension")
            cmp -s "$repository/fuzz/$target.$extension" "$OUT/$target.$extension" \
                || fail "$target: $target.$extension missing or different in OUT"
        fi
    done
    if [ -f "$OUT/$target.dict" ]; then
        dictionary_flag=("-dict=$OUT/$target.dict")
    fi
    if [ -f "$OUT/$target.options" ]; then
        named=$(sed -n 's/^dict *= *//p' "$OUT/$target.options")
        if [ -n "$named" ] && [ ! -f "$OUT/$named" ]; then
            fail "$target: $target.options names dict $named, which is not in OUT"
        fi
    fi

    # The binary replays every seed once, with its dictionary parsed by libFuzzer.
    log="$work/$target.log"
    if ! COWPROOF_POLICY=concurrent "$binary" "${dictionary_flag[@]}" -runs=0 \
        "$unpacked" >"$log" 2>&1; then
        tail -5 "$log" >&2
        fail "$target: the binary failed on its seed corpus"
    elif [ ${#dictionary_flag[@]} -gt 0 ] && ! grep -q 'Dictionary: [1-9][0-9]* entries' "$log"; then
        fail "$target: libFuzzer loaded no entries from $target.dict"
    fi
    echo "check-build: $target: binary, $(find "$unpacked" -type f | wc -l) seeds replayed$(
        [ ${#dictionary_flag[@]} -gt 0 ] && printf ', %s' "$(grep -o 'Dictionary: [0-9]* entries' "$log")")"
done

# Nothing else in $OUT.
present=$(find "$OUT" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)
wanted=$(printf '%s\n' "${expected_files[@]}" | sort)
[ "$present" = "$wanted" ] || fail "OUT holds [$present], expected [$wanted]"

if [ "$failures" -gt 0 ]; then
    echo "check-build: $failures check(s) failed" >&2
    exit 1
fi
echo "check-build: build.sh produced every artifact of $(echo $targets | wc -w) targets"
