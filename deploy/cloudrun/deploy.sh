#!/usr/bin/env bash
# Canary release of sproxxo-fraud on Cloud Run, one gcloud step per command so that
# .github/workflows/release.yml can gate each step; `release` runs them all by hand.
set -euo pipefail
shopt -s inherit_errexit

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
readonly HERE ROOT

SERVICE="${SERVICE:-sproxxo-fraud}"
PROJECT="${PROJECT:-}"
REGION="${REGION:-}"
IMAGE="${IMAGE:-}"
# Audience of the ID tokens used for smoke tests (run.googleapis.com/custom-audiences).
AUDIENCE="${AUDIENCE:-sproxxo-fraud}"
SAMPLE="${SAMPLE:-${ROOT}/load/sample_transaction.json}"
SOAK_SECONDS="${SOAK_SECONDS:-120}"
MAX_5XX="${MAX_5XX:-0}"
TRAFFIC_STEPS="${TRAFFIC_STEPS:-10 50 100}"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy.sh [-p PROJECT] [-r REGION] [-i IMAGE] [-s SERVICE] COMMAND [ARGS...]

Options fall back to the environment variables of the same name.
  -p PROJECT   Google Cloud project id                    (required)
  -r REGION    Cloud Run region, e.g. europe-west1        (required)
  -i IMAGE     image to deploy, REGION-docker.pkg.dev/PROJECT/sproxxo/sproxxo-fraud:TAG
               (required by render, bootstrap, deploy, release)
  -s SERVICE   Cloud Run service name                     (default: sproxxo-fraud)

Commands:
  render                     print service.yaml with PROJECT, REGION and IMAGE filled in
  bootstrap                  create or reconfigure the service from service.yaml (100% to it)
  current                    print the revision serving the most traffic now
  deploy TAG                 deploy IMAGE as a revision with no traffic, tagged TAG; print it
  url TAG                    print the URL of the revision tagged TAG
  smoke URL                  GET URL/readyz and POST the sample transaction to URL/predict
  check REVISION URL         wait SOAK_SECONDS, smoke URL, and allow at most MAX_5XX
                             5xx responses logged by REVISION in that window
  shift REVISION PERCENT PREVIOUS
                             send PERCENT% of traffic to REVISION, the rest to PREVIOUS
  rollback PREVIOUS          send 100% of traffic back to PREVIOUS
  release TAG                current + deploy + smoke + shift through TRAFFIC_STEPS with a
                             check after each, rolling back on any failure

Environment: SMOKE_ID_TOKEN (skip minting one), AUDIENCE, SAMPLE, SOAK_SECONDS, MAX_5XX,
TRAFFIC_STEPS ("10 50 100").
USAGE
}

die_usage() {
  echo "deploy.sh: $*" >&2
  usage
  exit 2
}

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name}" ]] || die_usage "missing ${name} (flag or environment variable)"
  done
}

gcloud_run() {
  gcloud run "$@" --project="${PROJECT}" --region="${REGION}" --quiet
}

render() {
  require IMAGE
  sed -e "s#REGION-docker.pkg.dev/PROJECT/sproxxo/sproxxo-fraud:TAG#${IMAGE}#" \
    -e "s#\bPROJECT\b#${PROJECT}#g" \
    -e "s#\bREGION\b#${REGION}#g" \
    -e "s#^\(  name: \)sproxxo-fraud\$#\1${SERVICE}#" \
    -e '/^[[:space:]]*#/d' \
    "${HERE}/service.yaml"
}

bootstrap() {
  local rendered
  rendered="$(mktemp)"
  render >"${rendered}"
  gcloud_run services replace "${rendered}"
  rm -f "${rendered}"
}

current_revision() {
  gcloud_run services describe "${SERVICE}" --format=json |
    jq -er '[.status.traffic[] | select((.percent // 0) > 0)] | max_by(.percent) | .revisionName'
}

deploy() {
  local tag="$1"
  require IMAGE
  gcloud_run deploy "${SERVICE}" --image="${IMAGE}" --no-traffic --tag="${tag}" >&2
  revision_for_tag "${tag}"
}

revision_for_tag() {
  gcloud_run services describe "${SERVICE}" --format=json |
    jq -er --arg tag "$1" '.status.traffic[] | select(.tag == $tag) | .revisionName'
}

url_for_tag() {
  gcloud_run services describe "${SERVICE}" --format=json |
    jq -er --arg tag "$1" '.status.traffic[] | select(.tag == $tag) | .url'
}

id_token() {
  if [[ -n "${SMOKE_ID_TOKEN:-}" ]]; then
    printf '%s' "${SMOKE_ID_TOKEN}"
  else
    gcloud auth print-identity-token --audiences="${AUDIENCE}" --include-email
  fi
}

smoke() {
  local url="${1%/}" token body
  [[ -f "${SAMPLE}" ]] || { echo "deploy.sh: no sample transaction at ${SAMPLE}" >&2; exit 1; }
  token="$(id_token)"
  curl --fail-with-body --silent --show-error --max-time 10 \
    --retry 5 --retry-all-errors --retry-delay 3 \
    --header "Authorization: Bearer ${token}" "${url}/readyz" >/dev/null
  # Stamped now: a stale sample would be scored, but as `valid: false` (timestamp_stale).
  body="$(jq --arg now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '.timestamp = $now' "${SAMPLE}" |
    curl --fail-with-body --silent --show-error --max-time 10 \
      --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
      --data-binary @- "${url}/predict")"
  jq -e '.valid == true and (.decision | type == "string")' <<<"${body}" >/dev/null
  echo "smoke ok: ${url} answered ${body}" >&2
}

count_5xx() {
  local revision="$1" since="$2"
  gcloud logging read \
    "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${SERVICE}\" AND resource.labels.revision_name=\"${revision}\" AND httpRequest.status>=500 AND timestamp>=\"${since}\"" \
    --project="${PROJECT}" --limit=1000 --format='value(httpRequest.status)' | wc -l
}

check() {
  local revision="$1" url="$2" since errors
  since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  sleep "${SOAK_SECONDS}"
  smoke "${url}"
  errors="$(count_5xx "${revision}" "${since}")"
  if ((errors > MAX_5XX)); then
    echo "deploy.sh: ${revision} logged ${errors} 5xx responses in ${SOAK_SECONDS}s (max ${MAX_5XX})" >&2
    return 1
  fi
  echo "check ok: ${revision} logged ${errors} 5xx responses in ${SOAK_SECONDS}s" >&2
}

shift_traffic() {
  local revision="$1" percent="$2" previous="$3"
  if ((percent >= 100)); then
    gcloud_run services update-traffic "${SERVICE}" --to-revisions="${revision}=100"
  else
    gcloud_run services update-traffic "${SERVICE}" \
      --to-revisions="${revision}=${percent},${previous}=$((100 - percent))"
  fi
}

rollback() {
  local previous="$1"
  echo "rolling back: 100% of traffic to ${previous}" >&2
  gcloud_run services update-traffic "${SERVICE}" --to-revisions="${previous}=100"
}

ROLLBACK_TO=""

rollback_on_failure() {
  local status=$?
  if ((status != 0)) && [[ -n "${ROLLBACK_TO}" ]]; then
    rollback "${ROLLBACK_TO}"
  fi
  exit "${status}"
}

release() {
  local tag="$1" previous revision url percent
  previous="$(current_revision)"
  revision="$(deploy "${tag}")"
  url="$(url_for_tag "${tag}")"
  # set -e ends the script at the first failed step; the EXIT trap then restores traffic.
  ROLLBACK_TO="${previous}"
  trap rollback_on_failure EXIT
  smoke "${url}"
  for percent in ${TRAFFIC_STEPS}; do
    shift_traffic "${revision}" "${percent}" "${previous}"
    check "${revision}" "${url}"
  done
  ROLLBACK_TO=""
  echo "released ${revision} (was ${previous})" >&2
}

main() {
  local opt
  while getopts ':p:r:i:s:h' opt; do
    case "${opt}" in
      p) PROJECT="${OPTARG}" ;;
      r) REGION="${OPTARG}" ;;
      i) IMAGE="${OPTARG}" ;;
      s) SERVICE="${OPTARG}" ;;
      h) usage; exit 0 ;;
      *) die_usage "unknown option -${OPTARG}" ;;
    esac
  done
  shift $((OPTIND - 1))
  (($# >= 1)) || die_usage "missing COMMAND"
  require PROJECT REGION

  local command="$1"
  shift
  case "${command}:$#" in
    render:0) render ;;
    bootstrap:0) bootstrap ;;
    current:0) current_revision ;;
    deploy:1) deploy "$1" ;;
    url:1) url_for_tag "$1" ;;
    smoke:1) smoke "$1" ;;
    check:2) check "$1" "$2" ;;
    shift:3) shift_traffic "$1" "$2" "$3" ;;
    rollback:1) rollback "$1" ;;
    release:1) release "$1" ;;
    *) die_usage "bad command or argument count: ${command} $*" ;;
  esac
}

main "$@"
