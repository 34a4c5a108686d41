#!/usr/bin/env bash
# The GPU agent on a machine with an NVIDIA GPU, in under 10 minutes:
#   1. installs the project (without torch: the agent and `vigil up --no-workload` do not need it),
#   2. runs `vigil agent --probe` against real NVML (which fields each GPU supports, each call's cost),
#   3. samples real NVML for 30 s into a local `vigil up` (embedded store, loopback),
#   4. prints the supported fields, the per-cycle sampling cost in µs and the stored row counts,
#      and checks that every GPU stored exactly one gpu.utilization point per cycle.
#
#   bash bench/gpu_check.sh            # results also land in $OUT (or ./gpu-check-out)
#
# Environment: VENV (default .venv; reused when it already has the project, e.g. on a machine without
# PyPI), PYTHON (default python3), SECONDS_TO_SAMPLE (default 30), PORT (default: a free one),
# DRY_RUN_SIMULATE=N (check this script on a machine without a GPU: N simulated GPUs, said so).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
SECONDS_TO_SAMPLE=${SECONDS_TO_SAMPLE:-30}
OUT_DIR=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d -t vigil-gpu-check-XXXXXX)
UP_PID=""
FAILURES=0

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; FAILURES=$((FAILURES + 1)); }
cleanup() {
    if [[ -n "$UP_PID" ]] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say "machine"
date -u +%Y-%m-%dT%H:%M:%SZ
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,uuid,driver_version,pci.bus_id,mig.mode.current --format=csv || true
else
    echo "nvidia-smi not found: NVML may still answer if libnvidia-ml.so.1 is installed"
fi

say "install"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import gpu_agent, pynvml, vigil" 2>/dev/null; then
    echo "reusing $VENV (the project is already installed there)"
else
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Every dependency but torch (the reference workload's), then the project itself.
    "$VENV/bin/python" - <<'EOF' >"$WORK/requirements.txt"
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() != "torch"))
EOF
    timeout 420 "$VENV/bin/python" -m pip install -q -r "$WORK/requirements.txt"
    timeout 120 "$VENV/bin/python" -m pip install -q --no-deps -e .
fi
PY="$VENV/bin/python"
BACKEND=()
if [[ -n "${DRY_RUN_SIMULATE:-}" ]]; then
    echo "DRY RUN: $DRY_RUN_SIMULATE simulated GPUs, not NVML; the figures below say nothing about real GPUs"
    BACKEND=(--simulate "$DRY_RUN_SIMULATE")
fi
"$PY" -c "import pynvml; print('nvidia-ml-py', getattr(pynvml, '__version__', '?'))" || true

say "probe (real NVML)"
if ! timeout 120 "$PY" -m gpu_agent --probe "${BACKEND[@]}" | tee "$OUT_DIR/probe.txt"; then
    echo "vigil agent --probe failed: NVML does not answer on this machine"
    exit 1
fi
timeout 120 "$PY" -m gpu_agent --probe --json "${BACKEND[@]}" >"$OUT_DIR/probe.json"
"$PY" - "$OUT_DIR/probe.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"driver {report['host'].get('gpu.driver.version', '?')}, CUDA {report['host'].get('gpu.cuda.version', '?')}, "
      f"{len(report['devices'])} devices (GPUs and MIG instances)")
fields = {}
for device in report["devices"]:
    label = device["attributes"].get("gpu.index", "?")
    if "gpu.mig.gpu_instance_id" in device["attributes"]:
        label += "/mig" + device["attributes"]["gpu.mig.gpu_instance_id"]
    for name, probe in device["fields"].items():
        fields.setdefault(name, []).append((label, probe))
print(f"{'field':<28}{'supported on':<22}{'cost (µs, first GPU)':<22}not supported / why")
for name, entries in fields.items():
    yes = [l for l, p in entries if p["support"] == "supported"]
    no = sorted({f"{p['support']}: {p['detail']}" for l, p in entries if p["support"] != "supported"})
    cost = next((p["cost_us"] for l, p in entries if p["cost_us"] is not None), None)
    print(f"{name:<28}{(','.join(yes) or '-'):<22}{('%.1f' % cost if cost is not None else '-'):<22}{'; '.join(no)}")
EOF

say "vigil up (embedded store, loopback)"
if [[ -z "${PORT:-}" ]]; then
    PORT=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
fi
"$PY" -m vigil.cli up --data "$WORK/data" --port "$PORT" --no-agent --no-workload >"$OUT_DIR/vigil-up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 120); do
    if "$PY" -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=2).status != 200)" 2>/dev/null; then
        break
    fi
    sleep 0.5
done
kill -0 "$UP_PID" || { cat "$OUT_DIR/vigil-up.log"; echo "vigil up did not start"; exit 1; }
echo "collector at http://127.0.0.1:$PORT"

say "sampling real NVML for ${SECONDS_TO_SAMPLE} s"
CYCLES=$SECONDS_TO_SAMPLE
timeout $((SECONDS_TO_SAMPLE + 120)) "$PY" -m gpu_agent \
    --collector "http://127.0.0.1:$PORT" --interval 1 --cycles "$CYCLES" --slow-interval 5 \
    --spool "$WORK/spool" --drain-timeout 60 --label purpose=gpu-check "${BACKEND[@]}" 2>&1 | tee "$OUT_DIR/agent.log" \
    || fail "the agent exited non-zero"
STOPPED=$(grep 'event=agent_stopped' "$OUT_DIR/agent.log" | tail -1 || true)
[[ -n "$STOPPED" ]] || fail "the agent did not log agent_stopped"
"$PY" - "$STOPPED" <<'EOF'
import re, sys
fields = dict(re.findall(r"(\w+)=(\S+)", sys.argv[1]))
print("per-cycle cost, µs (NVML sampling only):    p50 %s  p99 %s  max %s"
      % (fields.get("sample_p50_us"), fields.get("sample_p99_us"), fields.get("sample_max_us")))
print("per-cycle cost, µs (sampling + OTel collect): p50 %s  p99 %s  max %s"
      % (fields.get("cycle_p50_us"), fields.get("cycle_p99_us"), fields.get("cycle_max_us")))
print("batches sent %s, points sent %s, failures %s, dropped %s"
      % (fields.get("batches_sent"), fields.get("points_sent"), fields.get("export_failures"), fields.get("batches_dropped")))
EOF

say "stored rows"
kill -TERM "$UP_PID"
wait "$UP_PID" || true
UP_PID=""
"$PY" -m vigil.cli query --data "$WORK/data" \
    "SELECT MetricName, count() AS rows, uniqExact(Attributes['gpu.uuid'], Attributes['gpu.mig.gpu_instance_id']) AS series_devices
     FROM merge(currentDatabase(), '^otel_metrics_(gauge|sum)$') GROUP BY MetricName ORDER BY MetricName" 2>/dev/null \
    | tee "$OUT_DIR/rows.tsv"
GPUS=$("$PY" -c "import json; r = json.load(open('$OUT_DIR/probe.json')); print(sum(1 for d in r['devices'] if 'gpu.mig.gpu_instance_id' not in d['attributes']))")
UTIL_GPUS=$("$PY" -c "
import json; r = json.load(open('$OUT_DIR/probe.json'))
print(sum(1 for d in r['devices'] if d['fields'].get('utilization', {}).get('support') == 'supported'))")
UTIL_ROWS=$("$PY" -m vigil.cli query --data "$WORK/data" --json \
    "SELECT count() FROM otel_metrics_gauge WHERE MetricName = 'gpu.utilization'" 2>/dev/null | tr -d '[] \n')
UP_ROWS=$("$PY" -m vigil.cli query --data "$WORK/data" --json \
    "SELECT count() FROM otel_metrics_gauge WHERE MetricName = 'gpu.up' AND Value = 1" 2>/dev/null | tr -d '[] \n')
echo "GPUs: $GPUS (utilization supported on $UTIL_GPUS), cycles: $CYCLES"
echo "gpu.utilization rows: $UTIL_ROWS (expected $((UTIL_GPUS * CYCLES)))"
echo "gpu.up=1 rows: $UP_ROWS"
[[ "$UTIL_ROWS" == "$((UTIL_GPUS * CYCLES))" ]] || fail "gpu.utilization rows $UTIL_ROWS != $UTIL_GPUS GPUs x $CYCLES cycles"
[[ "$UP_ROWS" -ge "$((GPUS * CYCLES))" ]] || fail "gpu.up rows $UP_ROWS < $GPUS GPUs x $CYCLES cycles"

say "result"
if [[ $FAILURES -eq 0 ]]; then
    echo "gpu check passed; files in $OUT_DIR"
else
    echo "gpu check: $FAILURES failure(s); files in $OUT_DIR"
    exit 1
fi
