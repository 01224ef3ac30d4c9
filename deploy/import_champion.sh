#!/usr/bin/env bash
# Import the published champion into the local BentoML store, keeping its labels (stage:
# champion) and its signature, so that training registers a challenger and the promotion
# gate compares against the real incumbent. An absent object is an error: the first
# champion is promoted by hand (docs/deployment.md), never bootstrapped in CI.
set -euo pipefail
object="${1:?usage: import_champion.sh gs://bucket/path/champion.bentomodel}"
target="${RUNNER_TEMP:-/tmp}/champion.bentomodel"
gcloud storage cp "${object}" "${target}"
uv run --no-sync bentoml models import "${target}"
