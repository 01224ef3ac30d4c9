#!/usr/bin/env bash
# Canary release of sproxxo-fraud on Cloud Run, one gcloud step per command so that
# .github/workflows/release.yml can gate each step; `release` runs them all by hand.
# One service.yaml serves every environment: ENVIRONMENT picks the service name, its
# runtime service account and the ID-token audience (sproxxo-fraud-ENVIRONMENT), and
# `canary` renders the release-check flavour (see canary_flavour).
set -euo pipefail
shopt -s inherit_errexit

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
readonly HERE ROOT

ENVIRONMENT="${ENVIRONMENT:-production}"
SERVICE="${SERVICE:-}"
PROJECT="${PROJECT:-}"
REGION="${REGION:-}"
IMAGE="${IMAGE:-}"
# Audience of the ID tokens used for smoke tests (run.googleapis.com/custom-audiences),
# set from ENVIRONMENT in main: a token minted for one environment is refused by the others.
AUDIENCE=""
SAMPLE="${SAMPLE:-${ROOT}/load/sample_transaction.json}"
# sproxxo/serving/guard.py SYNTHETIC_HEADER (tests/config/test_cloudrun.py checks they agree).
readonly SYNTHETIC_HEADER="X-Sproxxo-Synthetic"
SOAK_SECONDS="${SOAK_SECONDS:-120}"
MAX_5XX="${MAX_5XX:-0}"
TRAFFIC_STEPS="${TRAFFIC_STEPS:-10 50 100}"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy.sh [-p PROJECT] [-r REGION] [-i IMAGE] [-e ENVIRONMENT] [-s SERVICE]
                 COMMAND [ARGS...]

Options fall back to the environment variables of the same name.
  -p PROJECT     Google Cloud project id                  (required)
  -r REGION      Cloud Run region, e.g. europe-west1      (required)
  -i IMAGE       image to deploy, REGION-docker.pkg.dev/PROJECT/sproxxo/sproxxo-fraud:TAG
                 (required by render, bootstrap, deploy, release)
  -e ENVIRONMENT production (default), canary, staging, ...: the ID-token audience
                 sproxxo-fraud-ENVIRONMENT; `canary` also means ingress all (IAM only,
                 reachable from CI runners) and no idle instances
  -s SERVICE     Cloud Run service name; its runtime account is SERVICE@PROJECT
                 (default: sproxxo-fraud in production, else sproxxo-fraud-ENVIRONMENT)

Commands:
  render                     print service.yaml for ENVIRONMENT with PROJECT, REGION and
                             IMAGE filled in
  bootstrap                  create or reconfigure the service from service.yaml (100% to it)
  current                    print the revision serving the most traffic now
  deploy TAG                 deploy IMAGE as a revision with no traffic, tagged TAG; print it
  url TAG                    print the URL of the revision tagged TAG
  smoke URL                  GET URL/readyz and POST the sample transaction to URL/predict,
                             marked synthetic (X-Sproxxo-Synthetic: 1)
  check REVISION [URL]       wait SOAK_SECONDS, smoke URL when given, and allow at most
                             MAX_5XX 5xx responses logged by REVISION in that window
  shift REVISION PERCENT PREVIOUS
                             send PERCENT% of traffic to REVISION, the rest to PREVIOUS
  rollback PREVIOUS          send 100% of traffic back to PREVIOUS
  release TAG                current + deploy + smoke + shift through TRAFFIC_STEPS with a
                             check after each, rolling back on any failure

Environment: SMOKE_ID_TOKEN (skip minting one), SAMPLE, SOAK_SECONDS, MAX_5XX,
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
    -e "s#\bENVIRONMENT\b#${ENVIRONMENT}#g" \
    -e "s#^\(  name: \)sproxxo-fraud\$#\1${SERVICE}#" \
    -e "s#^\(      serviceAccountName: \)sproxxo-fraud@#\1${SERVICE}@#" \
    -e '/^[[:space:]]*#/d' \
    "${HERE}/service.yaml" | canary_flavour
}

# The canary service only ever sees the release's synthetic checks: GitHub-hosted runners
# must reach its run.app URL (IAM still decides who may call it), and it keeps no instance
# up between releases. Its own runtime account keeps its deployer away from production's.
canary_flavour() {
  if [[ "${ENVIRONMENT}" == canary ]]; then
    sed -e 's#^\(    run.googleapis.com/ingress: \).*#\1all#' \
      -e 's#^\(        autoscaling.knative.dev/minScale: \).*#\1"0"#'
  else
    cat
  fi
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
  # Marked synthetic: its prediction-log row is flagged and monitoring leaves it out.
  body="$(jq --arg now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '.timestamp = $now' "${SAMPLE}" |
    curl --fail-with-body --silent --show-error --max-time 10 \
      --header "Authorization: Bearer ${token}" --header 'Content-Type: application/json' \
      --header "${SYNTHETIC_HEADER}: 1" --data-binary @- "${url}/predict")"
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
  local revision="$1" url="${2:-}" since errors
  since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  sleep "${SOAK_SECONDS}"
  # Without a URL the logs alone judge: production's ingress keeps CI runners out.
  if [[ -n "${url}" ]]; then
    smoke "${url}"
  fi
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
  while getopts ':p:r:i:e:s:h' opt; do
    case "${opt}" in
      p) PROJECT="${OPTARG}" ;;
      r) REGION="${OPTARG}" ;;
      i) IMAGE="${OPTARG}" ;;
      e) ENVIRONMENT="${OPTARG}" ;;
      s) SERVICE="${OPTARG}" ;;
      h) usage; exit 0 ;;
      *) die_usage "unknown option -${OPTARG}" ;;
    esac
  done
  shift $((OPTIND - 1))
  (($# >= 1)) || die_usage "missing COMMAND"
  require PROJECT REGION
  # It becomes part of a service name, a service account id (<= 30 characters) and a sed script.
  [[ "${ENVIRONMENT}" =~ ^[a-z][a-z0-9-]{0,15}$ ]] ||
    die_usage "ENVIRONMENT must be lowercase letters, digits and -, at most 16: ${ENVIRONMENT}"
  if [[ -z "${SERVICE}" ]]; then
    SERVICE="sproxxo-fraud"
    [[ "${ENVIRONMENT}" == production ]] || SERVICE="sproxxo-fraud-${ENVIRONMENT}"
  fi
  AUDIENCE="sproxxo-fraud-${ENVIRONMENT}"
  readonly ENVIRONMENT SERVICE AUDIENCE

  local command="$1"
  shift
  case "${command}:$#" in
    render:0) render ;;
    bootstrap:0) bootstrap ;;
    current:0) current_revision ;;
    deploy:1) deploy "$1" ;;
    url:1) url_for_tag "$1" ;;
    smoke:1) smoke "$1" ;;
    check:1) check "$1" ;;
    check:2) check "$1" "$2" ;;
    shift:3) shift_traffic "$1" "$2" "$3" ;;
    rollback:1) rollback "$1" ;;
    release:1) release "$1" ;;
    *) die_usage "bad command or argument count: ${command} $*" ;;
  esac
}

main "$@"
