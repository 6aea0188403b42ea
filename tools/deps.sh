#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently:
#  - the Debian packages in tools/debian-packages.txt that are not installed yet;
#  - npm packages for tests from their committed lock files (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' tools/debian-packages.txt | grep -v '^$' | sort -u)
missing=()
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# nodejs/npm may come from elsewhere (a newer Node); accept working binaries.
if command -v node >/dev/null && command -v npm >/dev/null; then
    filtered=()
    for p in "${missing[@]}"; do
        [[ $p == nodejs || $p == npm ]] || filtered+=("$p")
    done
    missing=("${filtered[@]}")
fi
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "deps: Debian packages present"
fi

for lock in $(find tests bench -name package-lock.json -not -path '*/node_modules/*' 2>/dev/null); do
    dir=$(dirname "$lock")
    stamp="$dir/node_modules/.ferry-lock-stamp"
    if [[ -f $stamp ]] && cmp -s "$lock" "$stamp"; then
        continue
    fi
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
done
