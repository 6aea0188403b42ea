#!/usr/bin/env bash
# Line and branch coverage of the sources a libFuzzer harness names, over a
# corpus: the committed seeds plus whatever the last run.sh found
# ($FERRY_BUILD/fuzz/<name>/corpus). Not a test: a measurement, to see which
# parser paths a harness never reaches.
# Usage: coverage.sh tests/fuzz/fuzz_<name>.c [FILE_REGEX]
#   FILE_REGEX picks the report's files (default: the harness's FUZZ_SOURCES)
# Needs clang, llvm-profdata, llvm-cov (Debian: clang, llvm).
set -euo pipefail
harness=$1
src=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${FERRY_BUILD:-$src/build}
name=$(basename "$harness" .c)
mods=$(sed -n 's|^// FUZZ_MODULES:||p' "$harness" | head -1)
libs=$(sed -n 's|^// FUZZ_LIBS:||p' "$harness" | head -1)
srcs=$(sed -n 's|^// FUZZ_SOURCES:||p' "$harness" | head -1)
out="$build/fuzzcov/$name"
rm -rf "$out"
mkdir -p "$out"
files=()
for m in $mods; do
    for f in "$src"/src/"$m"/*.c; do
        [[ $(basename "$f") == main.c ]] && continue
        files+=("$f")
    done
done
for f in $srcs; do files+=("$src/$f"); done
# shellcheck disable=SC2046
clang -g -O0 -std=gnu11 -D_GNU_SOURCE -DFERRY_VERSION=\"cov\" -DFERRY_COMMIT=\"cov\" \
    -mavx2 -mfma -mf16c -fprofile-instr-generate -fcoverage-mapping -fsanitize=fuzzer \
    -I"$src/src" $(pkg-config --cflags $libs 2>/dev/null || true) \
    "$harness" "${files[@]}" $(pkg-config --libs $libs 2>/dev/null || true) -lpthread -lm \
    -o "$out/$name"
corpus=("$src/tests/fuzz/corpus/${name#fuzz_}")
[[ -d $build/fuzz/$name/corpus ]] && corpus+=("$build/fuzz/$name/corpus")
(cd "$out" && LLVM_PROFILE_FILE="$out/%p.profraw" "./$name" -runs=0 "${corpus[@]}" \
    >"$out/run.log" 2>&1)
llvm-profdata merge -sparse "$out"/*.profraw -o "$out/merged.profdata"
regex=${2:-$(echo "$srcs" | xargs -n1 2>/dev/null | sed 's|.*/||' | paste -sd'|' -)}
mapfile -t shown < <(printf '%s\n' "$src"/src/*/*.c | grep -E "(${regex:-.})")
llvm-cov report "$out/$name" -instr-profile="$out/merged.profdata" "${shown[@]}"
echo "corpus: ${corpus[*]} ($(find "${corpus[@]}" -type f | wc -l) inputs)"
echo "per line: llvm-cov show $out/$name -instr-profile=$out/merged.profdata FILE"
