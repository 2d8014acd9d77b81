#!/usr/bin/env bash
# Build the project's image and push it to a registry, tagged REGISTRY/messaging-app:TAG, the
# reference the Kubernetes manifests and kubctl scripts use.
#
#   bash scripts/image_push.sh --registry ghcr.io/your-org --tag 1.1.0 [--set-kustomization]
#   make image-push REGISTRY=ghcr.io/your-org TAG=1.1.0 [SET_KUSTOMIZATION=1]
#
# Log in first (docker login / podman login REGISTRY). Run with -h for the options.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REGISTRY="${REGISTRY:-}"
TAG="${TAG:-}"
IMAGE_NAME="${IMAGE_NAME:-messaging-app}"
ENGINE="${ENGINE:-}"
PUSH=1
SET_KUSTOMIZATION=0
DRY_RUN=0
KUSTOMIZATION="${KUSTOMIZATION:-$ROOT/kustomization.yaml}"

usage() {
    cat <<USAGE
Usage: $(basename "$0") --registry REGISTRY --tag TAG [options]

Builds the Dockerfile at the repository root as REGISTRY/$IMAGE_NAME:TAG and pushes it.

Options (environment variable in brackets):
  -r, --registry REGISTRY  registry and path, e.g. ghcr.io/your-org [REGISTRY]; required
  -t, --tag TAG            image tag, e.g. 1.1.0 [TAG]; required; not 'latest' (a rollback
                           must find the old image again under the same tag)
      --name NAME          image name under the registry [IMAGE_NAME, default: $IMAGE_NAME]
      --engine ENGINE      docker or podman [ENGINE, default: docker if it reaches a daemon,
                           else podman]
      --no-push            build and tag only
      --set-kustomization  point kustomization.yaml's images (newName, newTag) at the image
      --dry-run            print the commands instead of running them
  -h, --help               this text

Then: kubectl apply -k . (first deploy, with --set-kustomization) or
./kubctl-0x02 -i REGISTRY/$IMAGE_NAME:TAG (a blue/green release).
Exit status: 0 done, 1 the build or push failed, 2 usage error.
USAGE
}

log() { printf '[image_push] %s\n' "$*"; }
die() { printf '[image_push] error: %s\n' "$*" >&2; exit 2; }
need_value() { if (($# < 2)) || [[ -z "$2" ]]; then die "$1 needs a value (see -h)"; fi; }

while (($# > 0)); do
    case "$1" in
        -r | --registry) need_value "$@"; REGISTRY="${2%/}"; shift 2 ;;
        -t | --tag) need_value "$@"; TAG="$2"; shift 2 ;;
        --name) need_value "$@"; IMAGE_NAME="$2"; shift 2 ;;
        --engine) need_value "$@"; ENGINE="$2"; shift 2 ;;
        --no-push) PUSH=0; shift ;;
        --set-kustomization) SET_KUSTOMIZATION=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see -h)" ;;
    esac
done

[[ -n "$REGISTRY" ]] || die "--registry is required (e.g. ghcr.io/your-org; see -h)"
[[ -n "$TAG" ]] || die "--tag is required (e.g. 1.1.0; see -h)"
# host[:port][/path...], lower case, as image references allow.
[[ "$REGISTRY" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]] ||
    die "--registry '$REGISTRY' is not a registry reference (host[:port][/path], lower case)"
case "$REGISTRY" in
    *example.com* | *example.org* | *example.invalid*)
        die "--registry '$REGISTRY' is the manifests' placeholder: give your own registry" ;;
esac
[[ "$IMAGE_NAME" =~ ^[a-z0-9]+([._-][a-z0-9]+)*$ ]] || die "--name '$IMAGE_NAME' is not an image name"
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "--tag '$TAG' is not an image tag"
[[ "$TAG" != latest ]] || die "--tag latest is refused: use a version (rollbacks need the old tag to stay)"
if [[ -z "$ENGINE" ]]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    elif ((DRY_RUN)); then
        ENGINE=docker
    else
        die "neither a docker daemon nor podman is available (see --engine)"
    fi
fi
[[ "$ENGINE" == docker || "$ENGINE" == podman ]] || die "--engine must be docker or podman"

REF="$REGISTRY/$IMAGE_NAME:$TAG"
run() {
    if ((DRY_RUN)); then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

log "image $REF ($ENGINE)"
run "$ENGINE" build -t "$REF" -f "$ROOT/Dockerfile" "$ROOT" || { log "build failed"; exit 1; }
if ((PUSH)); then
    run "$ENGINE" push "$REF" || { log "push failed (logged in? $ENGINE login ${REGISTRY%%/*})"; exit 1; }
fi
if ((SET_KUSTOMIZATION)); then
    [[ -f "$KUSTOMIZATION" ]] || die "$KUSTOMIZATION not found"
    if ((DRY_RUN)); then
        printf '+ set %s images: newName %s, newTag "%s"\n' "$KUSTOMIZATION" "$REGISTRY/$IMAGE_NAME" "$TAG"
    else
        sed -i -E "s#^([[:space:]]*newName:[[:space:]]*).*#\\1$REGISTRY/$IMAGE_NAME#; s#^([[:space:]]*newTag:[[:space:]]*).*#\\1\"$TAG\"#" "$KUSTOMIZATION"
        if ! grep -q "newName: $REGISTRY/$IMAGE_NAME\$" "$KUSTOMIZATION" || ! grep -q "newTag: \"$TAG\"\$" "$KUSTOMIZATION"; then
            die "could not set the image in $KUSTOMIZATION (it needs one newName: and one newTag: line)"
        fi
        log "kustomization.yaml now deploys $REF"
    fi
fi
log "done: kubectl apply -k . (first deploy) or ./kubctl-0x02 -i $REF (a release)"
