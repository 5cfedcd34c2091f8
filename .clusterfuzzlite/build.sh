#!/usr/bin/env bash
# Builds every cargo-fuzz target of fuzz/ and puts into $OUT, for each TARGET:
#   TARGET                    the libFuzzer binary (`cargo fuzz build -O`)
#   TARGET_seed_corpus.zip    the inputs of corpus/TARGET/ (not its *.md or *.cows notes)
#   TARGET.dict               fuzz/TARGET.dict, when there is one
#   TARGET.options            fuzz/TARGET.options, when there is one
# ClusterFuzzLite (.clusterfuzzlite/Dockerfile) and OSS-Fuzz (fuzz/oss-fuzz/build.sh)
# both run this script in the base-builder-rust image, with SRC and OUT set and the
# repository at $SRC/cowproof. `fuzz/check-build.sh` runs it outside Docker with SRC
# and OUT in temporary directories and checks every artifact (docs/fuzzing.md).
#
# COWPROOF_FUZZ_BUILD_ARGS adds arguments to `cargo fuzz build` (the local check passes
# `-s none` to build on stable without a sanitizer); the images leave it empty, so the
# base image's SANITIZER and cargo wrapper decide the instrumentation.
set -euo pipefail

: "${SRC:?SRC must name the source directory (the repository is \$SRC/cowproof)}"
: "${OUT:?OUT must name the output directory}"
repository="${COWPROOF_REPOSITORY:-$SRC/cowproof}"
fuzz_directory="$repository/fuzz"
build_target="${CARGO_BUILD_TARGET:-x86_64-unknown-linux-gnu}"
mkdir -p "$OUT"

# Every target: cargo-fuzz names a target after its file in fuzz_targets/. Not `cargo fuzz
# list`: in coverage builds the base image's cargo wrapper turns every `cargo fuzz`
# command into `cargo build --bins` (check-build.sh checks the two lists agree).
targets=$(find "$fuzz_directory/fuzz_targets" -maxdepth 1 -name '*.rs' -printf '%f\n' \
    | sed 's/\.rs$//' | sort)
if [ -z "$targets" ]; then
    echo "build.sh: no fuzz targets in $fuzz_directory/fuzz_targets" >&2
    exit 1
fi

# The images set SANITIZER (address, memory, undefined, coverage): their builds keep the
# system allocator, which the sanitizers intercept, and do not compile mimalloc's C with
# the images' CFLAGS (fuzz/Cargo.toml, feature `fast-allocator`). Local builds keep it.
allocator_args=""
if [ -n "${SANITIZER:-}" ]; then
    allocator_args="--no-default-features"
fi

# shellcheck disable=SC2086 # the argument lists are lists of words on purpose.
(cd "$fuzz_directory" && cargo fuzz build -O $allocator_args ${COWPROOF_FUZZ_BUILD_ARGS:-})

binary_directory="$fuzz_directory/target/$build_target/release"
for target in $targets; do
    cp "$binary_directory/$target" "$OUT/$target"

    seeds="$repository/corpus/$target"
    if [ -d "$seeds" ]; then
        archive="$OUT/${target}_seed_corpus.zip"
        rm -f "$archive"
        # -j: flat names, as libFuzzer reads a corpus directory; -X: no extra attributes,
        # so the archive depends on the inputs only.
        find "$seeds" -maxdepth 1 -type f ! -name '*.md' ! -name '*.cows' -print0 \
            | sort -z | xargs -0 --no-run-if-empty zip -q -j -X "$archive"
    fi

    for extension in dict options; do
        if [ -f "$fuzz_directory/$target.$extension" ]; then
            cp "$fuzz_directory/$target.$extension" "$OUT/$target.$extension"
        fi
    done
done
