#!/usr/bin/env bash
# Deploy the daily drift job and its schedule, and the alerting pieces it feeds.
#   drift-job.sh -p PROJECT -r REGION -i IMAGE render|deploy|schedule|run|alerts|all
set -euo pipefail
shopt -s inherit_errexit

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
PROJECT="${PROJECT:-}"
REGION="${REGION:-}"
IMAGE="${IMAGE:-}"
JOB="${JOB:-sproxxo-drift}"
SCHEDULE="${SCHEDULE:-30 3 * * *}"   # 03:30 UTC daily: yesterday's log is complete
SCHEDULER_SA="${SCHEDULER_SA:-sproxxo-scheduler}"

usage() {
  echo "usage: drift-job.sh [-p PROJECT] [-r REGION] [-i IMAGE] render|deploy|schedule|run|alerts|all" >&2
  exit 2
}

while getopts "p:r:i:" opt; do
  case "${opt}" in
    p) PROJECT="${OPTARG}" ;;
    r) REGION="${OPTARG}" ;;
    i) IMAGE="${OPTARG}" ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage
[[ -n "${PROJECT}" && -n "${REGION}" ]] || { echo "PROJECT and REGION are required" >&2; exit 2; }

render() {
  [[ -n "${IMAGE}" ]] || { echo "IMAGE is required" >&2; exit 2; }
  sed -e "s|IMAGE|${IMAGE}|g" -e "s|PROJECT|${PROJECT}|g" -e "s|REGION|${REGION}|g" \
    "${HERE}/drift-job.yaml"
}

deploy() {
  local rendered
  rendered="$(mktemp)"
  render >"${rendered}"
  gcloud run jobs replace "${rendered}" --project="${PROJECT}" --region="${REGION}"
  rm -f "${rendered}"
}

schedule() {
  local uri="https://run.googleapis.com/v2/projects/${PROJECT}/locations/${REGION}/jobs/${JOB}:run"
  local sa="${SCHEDULER_SA}@${PROJECT}.iam.gserviceaccount.com"
  if gcloud scheduler jobs describe "${JOB}-daily" --project="${PROJECT}" \
      --location="${REGION}" >/dev/null 2>&1; then
    gcloud scheduler jobs update http "${JOB}-daily" --project="${PROJECT}" \
      --location="${REGION}" --schedule="${SCHEDULE}" --time-zone=UTC --uri="${uri}" \
      --http-method=POST --oauth-service-account-email="${sa}"
  else
    gcloud scheduler jobs create http "${JOB}-daily" --project="${PROJECT}" \
      --location="${REGION}" --schedule="${SCHEDULE}" --time-zone=UTC --uri="${uri}" \
      --http-method=POST --oauth-service-account-email="${sa}"
  fi
}

alerts() {
  local metric policy
  for metric in "${HERE}"/log_metrics/*.yaml; do
    gcloud logging metrics create "$(basename "${metric}" .yaml | tr - _ | sed 's/^/sproxxo_/')" \
      --project="${PROJECT}" --config-from-file="${metric}" ||
      gcloud logging metrics update "$(basename "${metric}" .yaml | tr - _ | sed 's/^/sproxxo_/')" \
        --project="${PROJECT}" --config-from-file="${metric}"
  done
  for policy in "${HERE}"/policies/*.yaml; do
    gcloud alpha monitoring policies create --project="${PROJECT}" --policy-from-file="${policy}"
  done
  gcloud monitoring dashboards create --project="${PROJECT}" \
    --config-from-file="${HERE}/dashboard.json"
}

case "$1" in
  render) render ;;
  deploy) deploy ;;
  schedule) schedule ;;
  run) gcloud run jobs execute "${JOB}" --project="${PROJECT}" --region="${REGION}" --wait ;;
  alerts) alerts ;;
  all) deploy; schedule; alerts ;;
  *) usage ;;
esac
