#!/usr/bin/env bash
# OSS-Fuzz build (docs/fuzzing.md): the same script ClusterFuzzLite runs, from the
# cloned repository, so the two cannot drift apart.
set -euo pipefail
exec "$SRC/cowproof/.clusterfuzzlite/build.sh" "$@"
