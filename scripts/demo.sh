#!/usr/bin/env bash
# The CPU demo end to end on SynthFaces (configs/tiny.py):
#   1. build SynthFaces with its TFDS builder (ArrayRecord, 64x64; 480 + 8 people, one 12-frame video each),
#   2. stage 1 (images) through the grain pipeline -> sample + metrics,
#   3. stage 2 (video, ICA) from the stage-1 checkpoint -> sample videos + metrics JSON
#      (held-out cross-identity reenactment: PSNR in the motion mask vs copying the source),
#   4. export the stage-2 inference bundle and animate a held-out person with another held-out
#      person's motion (30 frames: 7.5 clips) -> animate.mp4 (person | driving render | result).
# usage: bash scripts/demo.sh [WORKDIR] [STEPS_IMAGE] [STEPS_VIDEO]   (defaults: workdirs/demo 500 160)
# Installs the runtime set into ./.venv first (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n 2,10p "$0"; exit 0
fi
work="${1:-workdirs/demo}"
steps_image="${2:-500}"
steps_video="${3:-160}"
for n in "$steps_image" "$steps_video"; do
  case "$n" in ''|*[!0-9]*|0) echo "demo.sh: step counts must be positive integers, got '$n'" >&2; exit 2 ;; esac
done
bash scripts/install.sh runtime     # set-up is part of the main job (a no-op when installed)
py=.venv/bin/python
export JAX_PLATFORMS=cpu
mkdir -p "$work"
work="$(cd "$work" && pwd)"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$work/xla_cache}"
tfds_dir="$work/tfds"
data=(--config.data.source=tfds --config.data.tfds_data_dir="$tfds_dir" --config.data.mixture=synth_faces=1)
start=$(date +%s)
echo "== SynthFaces -> TFDS ArrayRecord in $tfds_dir"
if [ ! -f "$tfds_dir/synth_faces/demo64/1.0.0/dataset_info.json" ]; then
  "$py" -m data_pipelines.build synth_faces/res64 --data_dir "$tfds_dir" --config_name demo64 \
    --set train_identities=480 --set validation_identities=8 --set test_identities=0 \
    --set videos_per_identity=1 --set num_frames=12 2>&1 | grep -v "examples/s\|splits/s" || true
fi
[ -f "$tfds_dir/synth_faces/demo64/1.0.0/dataset_info.json" ] || { echo "demo.sh: the SynthFaces build failed" >&2; exit 1; }
echo "== stage 1 (images): $steps_image steps -> $work/stage1   ($(( $(date +%s) - start ))s so far)"
"$py" -m mimaface_jax.train --config configs/tiny.py:image --workdir "$work/stage1" "${data[@]}" \
  --config.train.num_steps="$steps_image" --config.optimizer.warmup_steps=$(( steps_image < 20 ? steps_image : 20 )) \
  --verbosity=-1
echo "== stage 2 (video, ICA): $steps_video steps -> $work/stage2   ($(( $(date +%s) - start ))s so far)"
"$py" -m mimaface_jax.train --config configs/tiny.py:video --workdir "$work/stage2" "${data[@]}" \
  --config.train.num_steps="$steps_video" --config.optimizer.warmup_steps=$(( steps_video < 20 ? steps_video : 20 )) \
  --config.init.stage1_checkpoint="$work/stage1" --verbosity=-1
echo "== export + animate a held-out person   ($(( $(date +%s) - start ))s so far)"
rm -rf "$work/bundle"
"$py" -m mimaface_jax.export --workdir "$work/stage2" --out "$work/bundle"
"$py" -m mimaface_jax.data.synth_faces --dataset "$tfds_dir/synth_faces/demo64/1.0.0" --out_dir "$work/animate_inputs" \
  --split validation --person 0 --driver 1 --frames 30
"$py" -m mimaface_jax.animate --model "$work/bundle" --source "$work/animate_inputs/person.npz" \
  --driving "$work/animate_inputs/motion.npz" --out "$work/animate.mp4" --side_by_side --overwrite
echo "== done in $(( $(date +%s) - start ))s"
echo "samples: $work/stage2/samples/   metrics: $work/stage2/eval_metrics.json $work/stage2/metrics.jsonl"
echo "animation: $work/animate.mp4 (+ animate.json)   bundle: $work/bundle"
