#!/usr/bin/env bash
# Builds the playground page into dist/ (index.html, app.js, app.css), which the gateway embeds
# with include_bytes! (src/server/playground.rs). dist/ is committed, so `cargo run` needs no npm;
# run this after changing package.json or src/, and commit dist/ with the change.
#
# Everything comes from node_modules (pinned by package-lock.json): the page loads nothing from
# the network but the gateway's own /playground/* and /graphql. The build fails if an output file
# would load a script, style or font from an absolute URL.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --no-audit --no-fund

rm -rf dist
mkdir -p dist
# - graphql-ws (the fetcher's `import("graphql-ws")`, for subscriptions over /graphql/ws) is
#   bundled: the page loads nothing from elsewhere.
# - Legal comments (licences of the bundled packages) stay at the end of app.js.
npx --no-install esbuild src/main.jsx \
  --bundle \
  --format=esm \
  --target=es2022 \
  --minify \
  --jsx=automatic \
  --define:process.env.NODE_ENV='"production"' \
  --legal-comments=eof \
  --log-level=warning \
  --outfile=dist/app.js
cp src/index.html dist/index.html

# No absolute URL in a place the browser would load it from.
if grep -nE '<(script|link)[^>]*(src|href)="(https?:)?//' dist/index.html \
  || grep -nE '@import|url\((["'"'"']?)(https?:)?//' dist/app.css \
  || grep -noE 'import\((["'"'"'])https?://' dist/app.js; then
  echo "build.sh: dist/ would load something from another origin" >&2
  exit 1
fi

ls -l dist
