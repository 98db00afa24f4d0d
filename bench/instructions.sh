#!/usr/bin/env bash
# Instructions per call of BenchmarkGateOverhead, bare mcp-go and toolgate,
# counted by valgrind's callgrind: on a shared VM, where the time of one run
# moves by ±20%, the count of a run moves by about 1%, so a change of a few
# hundred instructions shows.
#
#   bench/instructions.sh            # totals per call
#   bench/instructions.sh -top 30    # and toolgate's 30 costliest functions over bare's (self cost)
#
# The garbage collector is off (GOGC=off) so that the counts are the code's
# own; allocation costs show in -benchmem's B/op instead. Go's asynchronous
# preemption signals would stop callgrind, so they are off too. Each count
# is the difference between a run of N2 and one of N1 calls, which takes
# the start-up out.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
top=0
[[ "${1:-}" == "-top" ]] && top=${2:-30}
N1=${N1:-1000}
N2=${N2:-4000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/server.test" ./server/

# count <sub-benchmark> <calls>: callgrind's per-function self counts
count() {
	(cd server && GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind \
		--callgrind-out-file="$work/$1.$2.out" "$work/server.test" -test.run '^$' \
		-test.bench "GateOverhead/$1\$" -test.benchtime "${2}x" >/dev/null 2>&1)
	callgrind_annotate --auto=no --threshold=100 "$work/$1.$2.out" >"$work/$1.$2.txt"
}
for b in bare toolgate; do
	count $b "$N1"
	count $b "$N2"
done
python3 - "$work" "$N1" "$N2" "$top" <<'EOF'
import re, sys
work, n1, n2, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
line = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+)")
def per_call(bench):
    def load(n):
        d = {}
        for l in open(f"{work}/{bench}.{n}.txt"):
            m = line.match(l)
            if m:
                name = m.group(2).split(":", 1)[-1]
                name = re.sub(r"'\d+$", "", name)  # a recursion's levels are one function
                d[name] = d.get(name, 0) + int(m.group(1).replace(",", ""))
        return d
    a, b = load(n1), load(n2)
    return {k: (b.get(k, 0) - a.get(k, 0)) / (n2 - n1) for k in set(a) | set(b)}
bare, gate = per_call("bare"), per_call("toolgate")
B, T = bare.pop("PROGRAM", 0), gate.pop("PROGRAM", 0)
print(f"instructions per call: bare {B:,.0f}, toolgate {T:,.0f}, ratio bare/toolgate {B / T:.3f}")
if top:
    print(f"\ntoolgate's {top} costliest functions over bare's (self instructions per call):")
    diff = sorted(((gate.get(k, 0) - bare.get(k, 0), k) for k in set(bare) | set(gate)), reverse=True)
    for d, k in diff[:top]:
        print(f"{d:8,.0f}  {k}")
EOF
