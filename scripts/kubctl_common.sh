# shellcheck shell=bash
# Sourced by the kubctl scripts (messaging_app/kubctl-0x01, kubctl-0x02, kubctl-0x03) and by
# scripts/k8s_validate.sh: the namespace and image repository kustomization.yaml sets, and the
# check that the Secret messaging-app-secrets holds real values, not those of secret.env.example.
# The sourcing script sets KUBCTL_ROOT (the repository root) first.

# kustomization_namespace: the `namespace:` of kustomization.yaml (messaging-app without one).
kustomization_namespace() {
    local ns
    ns="$(sed -n 's/^namespace:[[:space:]]*"\{0,1\}\([A-Za-z0-9.-]*\).*/\1/p' "$KUBCTL_ROOT/kustomization.yaml" 2>/dev/null | head -n 1)"
    echo "${ns:-messaging-app}"
}

# kustomization_image_repo: the image repository (`newName:`) kustomization.yaml sets.
kustomization_image_repo() {
    local name
    name="$(sed -n 's/^[[:space:]]*newName:[[:space:]]*"\{0,1\}\([^"[:space:]]*\).*/\1/p' "$KUBCTL_ROOT/kustomization.yaml" 2>/dev/null | head -n 1)"
    echo "${name:-registry.example.com/messaging-app}"
}

# secret_env_problems FILE: FILE holds KEY=VALUE lines (secret.env, or the Secret's decoded
# data). Prints one line per missing value or placeholder; prints nothing when all is well.
secret_env_problems() {
    local file=$1 key value lowered example
    local -A seen=()
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        key="${line%%=*}"
        value="${line#*=}"
        seen[$key]=1
        lowered="${value,,}"
        case "$lowered" in
            *change-me* | *changeme* | *replace-me* | *replace-with* | *placeholder* | *.example.internal*)
                echo "$key still holds a placeholder ($(sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#' <<<"$value" | cut -c1-60))" ;;
        esac
        example="$(sed -n "s/^$key=//p" "$KUBCTL_ROOT/secret.env.example" 2>/dev/null | head -n 1)"
        if [[ -n "$example" && "$value" == "$example" ]]; then
            echo "$key is the value of secret.env.example"
        fi
        if [[ "$key" == DJANGO_SECRET_KEY ]] && ((${#value} < 32)); then
            echo "DJANGO_SECRET_KEY is shorter than 32 characters (the app refuses it)"
        fi
    done <"$file"
    for key in DJANGO_SECRET_KEY DATABASE_URL; do
        [[ -n "${seen[$key]:-}" ]] || echo "$key is missing"
    done
}

# require_real_secret NAMESPACE TMPDIR: exits 2 (through the sourcing script's die) unless the
# Secret messaging-app-secrets exists in NAMESPACE with real values. Uses the function k.
require_real_secret() {
    local ns=$1 dir=$2 problems
    # shellcheck disable=SC2016  # a Go template, not shell
    if ! k get secret messaging-app-secrets \
        -o go-template='{{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}' \
        >"$dir/secret.env" 2>"$dir/secret.err"; then
        die "Secret $ns/messaging-app-secrets not readable: $(head -n 1 "$dir/secret.err"). Create it first: cp secret.env.example secret.env, put real values in it, kubectl apply -k . (see README, Deploying to Kubernetes)"
    fi
    problems="$(secret_env_problems "$dir/secret.env")"
    rm -f "$dir/secret.env"
    if [[ -n "$problems" ]]; then
        die "Secret $ns/messaging-app-secrets is not ready for a deploy: $(tr '\n' ';' <<<"$problems" | sed 's/;$//; s/;/; /g'). Fix secret.env and kubectl apply -k . (or update the Secret), then run this again"
    fi
}
