# shellcheck shell=bash
# The API round trip both smoke scripts walk against a live server (source it; bash only):
#
#   api_round_trip <base URL> <scratch dir>
#
# register two people -> token -> conversation -> message -> read it back, then a static
# file that collectstatic gathered at build time. Every status is checked. Uses the
# caller's `note` (progress line) and `fail` (message, exit 1) functions.

# call <expected status> <method> <path> [json body] [extra curl args...]; body in $API_WORK/body.
api_call() {
    local expected=$1 method=$2 path=$3 body=${4:-} code
    shift 4 || shift $#
    local args=(-s -o "$API_WORK/body" -w '%{http_code}' -X "$method" "$API_BASE$path" "$@")
    if [[ -n $body ]]; then args+=(-H 'Content-Type: application/json' -d "$body"); fi
    code="$(curl "${args[@]}")" || fail "$method $path: curl failed"
    if [[ $code != "$expected" ]]; then
        fail "$method $path: HTTP $code, expected $expected: $(head -c 400 "$API_WORK/body")"
    fi
    note "$method $path -> $code"
}

api_field() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$API_WORK/body" "$1"; }

api_round_trip() {
    API_BASE=$1
    API_WORK=$2
    local suffix password bob_id auth conversation_id static_path
    api_call 200 GET /healthz
    suffix="$RANDOM$RANDOM"
    password="Smoke-passw0rd-$suffix"
    api_call 201 POST /api/users/ "{\"email\": \"alice.$suffix@example.com\", \"password\": \"$password\", \"first_name\": \"Alice\", \"last_name\": \"Smoke\"}"
    api_call 201 POST /api/users/ "{\"email\": \"bob.$suffix@example.com\", \"password\": \"$password\", \"first_name\": \"Bob\", \"last_name\": \"Smoke\"}"
    bob_id="$(api_field user_id)"
    api_call 200 POST /api/token/ "{\"email\": \"alice.$suffix@example.com\", \"password\": \"$password\"}"
    auth="Authorization: Bearer $(api_field access)"
    api_call 401 GET /api/conversations/
    api_call 201 POST /api/conversations/ "{\"participants\": [\"$bob_id\"]}" -H "$auth"
    conversation_id="$(api_field conversation_id)"
    api_call 201 POST "/api/conversations/$conversation_id/messages/" '{"message_body": "Hello from the smoke test"}' -H "$auth"
    api_call 200 GET "/api/conversations/$conversation_id/messages/" "" -H "$auth"
    grep -q 'Hello from the smoke test' "$API_WORK/body" || fail "the message is not listed in its conversation"
    note "the message reads back from its conversation"
    # collectstatic ran at build time; WhiteNoise serves the files under their hashed names.
    api_call 200 GET /api/docs/
    static_path="$(grep -o '/static/[^"]*swagger-ui[^"]*\.css' "$API_WORK/body" | head -1)"
    [[ -n $static_path ]] || fail "no static stylesheet linked from /api/docs/"
    api_call 200 GET "$static_path"
    # The landing page, and docs/websocket.md rendered (docs/ is in the image).
    api_call 200 GET /
    api_call 200 GET /docs/websocket/
    grep -q 'Live events over WebSockets' "$API_WORK/body" || fail "/docs/websocket/ does not show docs/websocket.md"
}
