#!/usr/bin/env bash
# make e2e-fleet: three toolgate replicas behind nginx (round robin, no
# affinity), their policy from one bundle server, Redis their limits.store,
# all on loopback; then e2e/fleet/fleet_test.go checks the fleet from outside
# (docs/architecture.md, "A fleet"). Installs redis-server and nginx with
# apt-get when they are missing. The test starts and stops every process
# (on failure too: each is stopped by the test's cleanup, and dies with it
# if the test is killed). Logs and configs live in the test's temporary
# directory, printed when a check fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || missing+=(nginx)
if ((${#missing[@]})); then
	echo "e2e-fleet: installing ${missing[*]} (apt-get)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bin=$(mktemp -d)/toolgate
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/toolgate
TOOLGATE_FLEET=1 TOOLGATE_BIN=$bin go test -count=1 -v -timeout 5m ./e2e/fleet/
