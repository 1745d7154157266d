#!/usr/bin/env bash
# Compares two builds of ktx on one model in one sitting: runs `ktx bench --json` from each,
# alternately (A B A B ...), so that load from the rest of the machine falls on both alike, and
# prints the median of every metric for each build and their ratio B/A.
#
# usage: bench/compare_builds.sh BUILD_A BUILD_B MODEL [--repeats N] [--json] [-- BENCH_ARGS...]
#   BUILD_A, BUILD_B  build folders (their bin/ktx is run) or ktx executables
#   --repeats N       runs per build (default 5)
#   --json            print the comparison as one JSON object
#   BENCH_ARGS        passed to ktx bench (default: -p 512 -n 128); e.g. -- -p 64 -n 16 -t 2
# Each run's JSON is kept in $KTX_COMPARE_DIR when set (else a temporary folder, removed).
set -euo pipefail
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then usage; exit 0; fi
if [[ $# -lt 3 ]]; then usage >&2; exit 2; fi
a=$1 b=$2 model=$3
shift 3
repeats=5
json=0
bench_args=(-p 512 -n 128)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeats) repeats=${2:?--repeats needs a value}; shift 2 ;;
    --json) json=1; shift ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "compare_builds.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$repeats" =~ ^[1-9][0-9]*$ ]] || { echo "compare_builds.sh: --repeats must be a positive whole number, not '$repeats'" >&2; exit 2; }
tool() { if [[ -d "$1" ]]; then echo "$1/bin/ktx"; else echo "$1"; fi; }
ktx_a=$(tool "$a") ktx_b=$(tool "$b")
for t in "$ktx_a" "$ktx_b"; do
  [[ -x "$t" ]] || { echo "compare_builds.sh: no ktx executable at $t" >&2; exit 1; }
done
[[ -f "$model" ]] || { echo "compare_builds.sh: no model file at $model" >&2; exit 1; }

if [[ -n "${KTX_COMPARE_DIR:-}" ]]; then
  dir=$KTX_COMPARE_DIR; mkdir -p "$dir"
else
  dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
fi
for ((i = 1; i <= repeats; i++)); do
  for side in a b; do
    t=$ktx_a; [[ $side == b ]] && t=$ktx_b
    echo "compare_builds.sh: run $i/$repeats of $side ($t)" >&2
    if ! "$t" bench -m "$model" --json "${bench_args[@]}" > "$dir/$side-$i.json" 2> "$dir/$side-$i.err"; then
      echo "compare_builds.sh: $t bench failed:" >&2; cat "$dir/$side-$i.err" >&2; exit 1
    fi
  done
done

python3 - "$dir" "$repeats" "$json" "$ktx_a" "$ktx_b" "$model" <<'PY'
import json, statistics, sys
folder, repeats, as_json, ktx_a, ktx_b, model = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", *sys.argv[4:]

def flatten(obj, prefix=""):
    """Numeric leaves as dotted names: decode_breakdown.experts.ms_per_token."""
    out = {}
    for k, v in obj.items():
        name = prefix + k
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
    return out

runs = {s: [json.load(open(f"{folder}/{s}-{i}.json")) for i in range(1, repeats + 1)] for s in "ab"}
flat = {s: [flatten(r) for r in runs[s]] for s in "ab"}
# Lower is better for times; higher for rates. Sizes and settings are shown but not judged.
def direction(name):
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("ms_per_token", "decode_ms_per_token", "decode_seconds", "prefill_seconds",
                "decode_other_ms_per_token") or name.startswith("prefill_breakdown."):
        return -1
    if name in ("bandwidth_gbs", "bandwidth_before_decode_gbs", "bandwidth_after_decode_gbs",
                "roofline_decode_tok_s"):
        return 0  # the machine, not the build: its spread shows the noise
    if leaf.endswith("tok_s") or leaf.endswith("gbs") or leaf.endswith("gflop_s") or leaf == "roofline_fraction":
        return 1
    return 0
names = [n for n in flat["a"][0] if all(n in f for s in "ab" for f in flat[s])]
rows = []
for n in names:
    va = [f[n] for f in flat["a"]]
    vb = [f[n] for f in flat["b"]]
    ma, mb = statistics.median(va), statistics.median(vb)
    # Noise: each side's spread (max - min) relative to its median.
    spread = max((max(v) - min(v)) / m if m else 0.0 for v, m in ((va, ma), (vb, mb)))
    ratio = mb / ma if ma else None
    verdict = ""
    d = direction(n)
    if d and ratio is not None and abs(ratio - 1) > spread:
        verdict = "better" if (ratio - 1) * d > 0 else "WORSE"
    rows.append({"metric": n, "median_a": ma, "median_b": mb, "ratio_b_a": ratio,
                 "spread": spread, "verdict": verdict})
info = {s: {k: runs[s][0].get(k) for k in ("isa", "threads", "model")} for s in "ab"}
if as_json:
    print(json.dumps({"a": ktx_a, "b": ktx_b, "model": model, "repeats": repeats,
                      "isa_a": info["a"]["isa"], "isa_b": info["b"]["isa"], "metrics": rows}))
    sys.exit(0)
print(f"A: {ktx_a} (isa {info['a']['isa']}, {info['a']['threads']} threads)")
print(f"B: {ktx_b} (isa {info['b']['isa']}, {info['b']['threads']} threads)")
print(f"model {model}, {repeats} runs each, alternating; ratio = median B / median A;")
print("a verdict only where the ratio moves by more than the runs' own spread\n")
print(f"{'metric':<44} {'median A':>12} {'median B':>12} {'B/A':>7} {'spread':>7}")
for r in rows:
    # Settings and per-kind bookkeeping (share, calls, bytes) stay in --json; rates and times here.
    if direction(r["metric"]) == 0 and r["metric"] not in (
            "bytes_per_token", "bandwidth_gbs", "bandwidth_before_decode_gbs",
            "bandwidth_after_decode_gbs"):
        continue
    ratio = f"{r['ratio_b_a']:.3f}" if r["ratio_b_a"] is not None else "-"
    print(f"{r['metric']:<44} {r['median_a']:>12.4g} {r['median_b']:>12.4g} {ratio:>7} "
          f"{100 * r['spread']:>6.1f}% {r['verdict']}")
PY
