#!/usr/bin/env bash
# Every GPU check of mfstore in one run, for a GPU machine that reaches no network.
#
#   bash ../shared/gpu/prepare.sh          # here, once: what the GPU machine lacks -> .device/
#   (send the four transfers it prints)    # then, on the GPU machine, from the project root:
#   bash benchmarks/gpu_check.sh [OUT]     # about 7 minutes; writes OUT/gpu_check.json
#
# Installs nothing from a network: `.device/on-device.sh` (from prepare.sh) installs the wheels,
# the project, Fashion-MNIST and ONNX Runtime GPU that came along. Each step has a time limit;
# a failed step is recorded and the next one runs; OUT/gpu_check.json is rewritten after every
# step (each step's log tail is in it), so a run cut short still reports what it did. Work
# files stay in /tmp/gpu_check; OUT receives only a few small files. Steps:
#   gpu_tests    pytest -m gpu (graphed == eager, overlap == no overlap, feeding, serving parity)
#   epoch_time   MF vs BP s/epoch by the training loop, 2x1000, batch 64/256/full, F-MNIST 55k
#   cnn          the paper's CNN, 15 epochs, 1 seed: MF (FF prediction) and BP test accuracy
#   store_train  `mfstore train --device cuda` of F-MNIST through the store (2x1000, batch 64)
#   serving      `mfstore serve --require-gpu`: CUDA provider, parity with PyTorch, latency
# Tolerances (float32, TF32 off unless --tf32): graphed vs eager 1e-5 on weights; overlap vs
# none 1e-6; ONNX Runtime CUDA vs PyTorch CUDA 1e-4 on goodness.
# To try the script itself on a CPU machine: GPU_CHECK_DEVICE=cpu GPU_CHECK_EXAMPLES=2000.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .device/on-device.sh ] && source .device/on-device.sh
out=${1:-${OUT:-benchmarks/results/gpu}}
scratch=${GPU_CHECK_SCRATCH:-/tmp/gpu_check}
rm -rf "$scratch" && mkdir -p "$out" "$scratch"
py=${PYTHON:-$(command -v .venv/bin/python || command -v python3)}
export MFSTORE_HOME="$scratch/home"
dev=${GPU_CHECK_DEVICE:-cuda}
subset=${GPU_CHECK_EXAMPLES:+--examples $GPU_CHECK_EXAMPLES}
fmnist=/usr/share/datasets/fashion-mnist
mf="$py -m cli"  # the mfstore command, wherever pip put (or did not put) its script
steps="$scratch/steps.jsonl"
: > "$steps"

report() {  # OUT/gpu_check.json from the steps so far and the result files that exist
  "$py" - "$scratch" "$out" <<'PY'
import json, pathlib, shutil, sys
scratch, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
result = {"steps": [json.loads(line) for line in (scratch / "steps.jsonl").read_text().splitlines()]}
for name in ("epoch_time", "store_train"):
    path = scratch / f"{name}.json"
    if path.exists():
        try:
            result[name] = json.loads(path.read_text())
        except ValueError:
            result[name] = path.read_text()[-2000:]
if (scratch / "cnn.png").exists():
    shutil.copy(scratch / "cnn.png", out / "cnn.png")
(out / "gpu_check.json").write_text(json.dumps(result, indent=1))
failed = [s["step"] for s in result["steps"] if s["rc"] != 0]
print(f"gpu_check: {len(result['steps']) - len(failed)} of {len(result['steps'])} steps passed"
      + (f"; failed: {', '.join(failed)}" if failed else "") + f"; {out / 'gpu_check.json'}")
PY
}

step() {  # step NAME SECONDS COMMAND…: run with a limit, keep its output, record rc and time
  local name=$1 limit=$2; shift 2
  local start rc
  start=$(date +%s.%N)
  timeout "$limit" "$@" > "$scratch/$name.txt" 2>&1
  rc=$?
  "$py" - "$name" "$rc" "$start" "$(date +%s.%N)" "$scratch/$name.txt" >> "$steps" <<'PY'
import json, sys
name, rc, start, end, log = sys.argv[1:]
tail = open(log, errors="replace").read()[-3000:]
print(json.dumps({"step": name, "rc": int(rc), "timed_out": rc in ("124", "137"),
                  "seconds": round(float(end) - float(start), 1), "tail": tail}))
PY
  echo "gpu_check: $name rc=$rc ($(tail -1 "$scratch/$name.txt" 2>/dev/null | cut -c1-100))"
  report > /dev/null
}

step device 20 "$py" -c "import torch, onnxruntime as o; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA', o.__version__, o.get_available_providers())"
step fmnist 5 test -f "$fmnist/train-images-idx3-ubyte.gz"  # else the benchmarks use synthetic data
step gpu_tests 100 "$py" -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider
step epoch_time 100 "$py" benchmarks/epoch_time.py --device "$dev" $subset --depths 2 --repeats 1 \
  --json "$scratch/epoch_time.json"
step cnn 120 "$py" benchmarks/accuracy.py --nets cnn --seeds 0 --epochs 15 --device "$dev" $subset \
  --png "$scratch/cnn.png"
step store_train 60 bash -c "$mf init && $mf data add fmnist $fmnist && \
  $mf train net --data fmnist --arch dense:1000,dense:1000 --batch-size 64 --epochs 3 \
  --baseline bp --device $dev --json > '$scratch/store_train.json'"
step serving 60 "$py" benchmarks/serving.py --device "$dev" --only compute,overhead,concurrency --quick
report
