#!/usr/bin/env bash
# The checkout benchmark side by side with an earlier commit: `npm run bench:checkout:vs -- <ref> [rounds]`.
#
# Absolute CPU per checkout moves with the (shared, virtual) machine from one day to the next;
# ratios between two trees measured alternately within minutes do not. This builds <ref> in a
# temporary worktree (its node_modules hard-linked from this one, this tree's bench/checkout.ts
# copied in so both are measured alike), runs baseline and current alternately, `rounds` times
# each (default 2), and writes bench/results/checkout.json (the last current run) with a
# `sideBySide` section: every round's figures for both and the current/baseline ratios.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REF="${1:?usage: bench-checkout-vs.sh <git ref> [rounds]}"
ROUNDS="${2:-2}"
BASE=$(mktemp -d /tmp/mc-bench-base-XXXXXX)
OUT=$(mktemp -d /tmp/mc-bench-runs-XXXXXX)
cleanup() { git worktree remove --force "$BASE" >/dev/null 2>&1 || rm -rf "$BASE"; }
trap cleanup EXIT

git worktree add --detach "$BASE" "$REF" >/dev/null
cp -al node_modules "$BASE/node_modules"
cp bench/checkout.ts "$BASE/bench/checkout.ts"
(cd "$BASE" && npm run -s build)
npm run -s build

for i in $(seq 1 "$ROUNDS"); do
	for side in baseline current; do
		dir=$([ "$side" = baseline ] && echo "$BASE" || pwd)
		echo "round $i: $side ($dir)"
		(cd "$dir" && BENCH_OUT="$OUT/$side-$i.json" node dist/bench/checkout.js >"$OUT/$side-$i.log" 2>&1) || { tail -40 "$OUT/$side-$i.log"; exit 1; }
	done
done

node - "$OUT" "$ROUNDS" "$REF" "$(git rev-parse --short "$REF")" <<'EOF'
const fs = require("fs");
const [out, rounds, ref, sha] = process.argv.slice(2);
const pick = f => {
	const r = JSON.parse(fs.readFileSync(f));
	const c = r.phases.closedLoop;
	return {
		checkoutsPerSecond: r.checkoutsPerSecond, cpuMsPerCheckout: r.cpuMsPerCheckout, cpuMsPerCheckoutByProcess: c.cpuMsPerCheckoutByProcess,
		writeSyscallsPerCheckoutByProcess: c.writeSyscallsPerCheckoutByProcess,
		// Socket writes of the node processes and nats-server together (PostgreSQL's send(2) calls are not counted).
		nodeAndNatsWritesPerCheckout: c.writeSyscallsPerCheckoutByProcess ? Number(Object.entries(c.writeSyscallsPerCheckoutByProcess).filter(([g]) => !g.startsWith("postgres")).reduce((a, [, n]) => a + (n ?? 0), 0).toFixed(2)) : null,
		sqlStatementsPerCheckout: r.sqlStatementsPerCheckout, commitsPerCheckout: r.commitsPerCheckout, brokerCallsPerCheckout: r.brokerCallsPerCheckout,
		natsMessagesPerCheckout: r.natsMessagesPerCheckout, openLoop: r.openLoop, oneClient: r.oneClient,
		loadAverage1m: [r.machine.loadAverage1mBeforeStart, r.machine.loadAverage1mAtEnd],
	};
};
const list = Array.from({ length: Number(rounds) }, (_, i) => ({ baseline: pick(`${out}/baseline-${i + 1}.json`), current: pick(`${out}/current-${i + 1}.json`) }));
const ratio = k => list.map(r => (r.baseline[k] ? Number((r.current[k] / r.baseline[k]).toFixed(2)) : null));
const result = JSON.parse(fs.readFileSync(`${out}/current-${rounds}.json`));
result.sideBySide = {
	how: `the same bench script run on ${ref} (${sha}) and on this tree, alternately, ${rounds} rounds on the same machine; the top-level figures are the last current run`,
	baselineCommit: sha,
	rounds: list,
	ratios: Object.fromEntries(["cpuMsPerCheckout", "checkoutsPerSecond", "sqlStatementsPerCheckout", "commitsPerCheckout", "natsMessagesPerCheckout", "nodeAndNatsWritesPerCheckout"].map(k => [k, ratio(k)])),
};
fs.writeFileSync("bench/results/checkout.json", JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result.sideBySide.ratios));
EOF
echo "written to bench/results/checkout.json"
