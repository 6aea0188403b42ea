#!/usr/bin/env bash
# Builds one libFuzzer harness with clang (ASan+UBSan) against the modules it
# names and runs it for its stated time over a copy of its committed corpus.
# Usage: run.sh tests/fuzz/fuzz_<name>.c [seconds]
# Header lines of the harness:
#   // FUZZ_MODULES: base model    whole modules linked in (their main.c left out)
#   // FUZZ_SOURCES: src/cli/x.c   single files (repo-relative) linked in besides,
#                                  for parsers living in a module that cannot be
#                                  linked whole (cli is the entire program)
#   // FUZZ_SECONDS: 10            run time (default 10)
#   // FUZZ_LIBS: jansson          pkg-config names of the libraries to link
set -euo pipefail
harness=$1
src=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${FERRY_BUILD:-$src/build}
name=$(basename "$harness" .c)
if ! command -v clang >/dev/null; then
    echo "SKIP: clang not installed; $name not run"
    exit 77
fi
mods=$(sed -n 's|^// FUZZ_MODULES:||p' "$harness" | head -1)
secs=${2:-$(sed -n 's|^// FUZZ_SECONDS:||p' "$harness" | head -1 | tr -d ' ')}
secs=${secs:-10}
libs=$(sed -n 's|^// FUZZ_LIBS:||p' "$harness" | head -1)
srcs=$(sed -n 's|^// FUZZ_SOURCES:||p' "$harness" | head -1)
out="$build/fuzz/$name"
mkdir -p "$out/obj"
flags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -DFERRY_VERSION=\"fuzz\" -DFERRY_COMMIT=\"fuzz\"
       -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
       -I"$src/src" $(pkg-config --cflags $libs 2>/dev/null || true))
objs=()
for m in $mods; do
    for f in "$src"/src/"$m"/*.c; do
        [[ $(basename "$f") == main.c ]] && continue
        extra=()
        # SIMD kernels keep ASan but not UBSan: its checks on their unrolled
        # loops made clang take ~6 minutes per file (model/attn_avx2.c: 350 s,
        # 50 s with ASan alone, 12 s plain), once per harness linking model;
        # the gcc ASan+UBSan unit-test build covers them with UBSan.
        [[ $f == *_avx2.c ]] && extra=(-mavx2 -mfma -mf16c -fno-sanitize=undefined)
        o="$out/obj/${m}_$(basename "$f" .c).o"
        clang "${flags[@]}" "${extra[@]}" -c "$f" -o "$o"
        objs+=("$o")
    done
done
for f in $srcs; do
    o="$out/obj/src_$(echo "${f#src/}" | tr '/' '_' | sed 's|\.c$||').o"
    clang "${flags[@]}" -c "$src/$f" -o "$o"
    objs+=("$o")
done
clang "${flags[@]}" -fsanitize=fuzzer -c "$harness" -o "$out/obj/harness.o"
clang -fsanitize=fuzzer,address,undefined "$out/obj/harness.o" "${objs[@]}" \
    $(pkg-config --libs $libs 2>/dev/null || true) -lpthread -lm -o "$out/$name"
work="$out/corpus"
rm -rf "$work"
mkdir -p "$work"
seeds="$src/tests/fuzz/corpus/${name#fuzz_}"
[[ -d $seeds ]] && cp -r "$seeds"/. "$work"/
echo "fuzz: $name for ${secs}s"
cd "$out"
# libFuzzer exits 77 on a finding by default, which ctest reads as a skip;
# a finding must fail the test.
"$out/$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 "$work"
