#!/usr/bin/env bash
# The CPU demo end to end on SynthFaces (configs/tiny.py):
#   1. build SynthFaces with its TFDS builder (ArrayRecord, 64x64; 480 + 8 people, one 12-frame video each),
#   2. stage 1 (images) through the grain pipeline -> sample + metrics,
#   3. stage 2 (video, ICA) from the stage-1 checkpoint -> sample videos + metrics JSON
#      (held-out cross-identity reenactment: PSNR in the motion mask vs copying the source),
#   4. export the stage-2 inference bundle and animate a held-out person with another held-out
#      person's motion (30 frames: 7.5 clips) -> animate.mp4 (person | driving render | result).
# usage: bash scripts/demo.sh [WORKDIR] [STEPS_IMAGE] [STEPS_VIDEO]   (defaults: workdirs/demo and scripts/synth_demo_lib.sh's)
# Installs the runtime set into ./.venv first (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n 2,10p "$0"; exit 0
fi
work="${1:-workdirs/demo}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
source scripts/synth_demo_lib.sh
steps_image="${2:-$DEMO_STEPS_IMAGE}"
steps_video="${3:-$DEMO_STEPS_VIDEO}"
check_steps "$steps_image" "$steps_video"
bash scripts/install.sh runtime     # set-up is part of the main job (a no-op when installed)
start=$(date +%s)
echo "== SynthFaces -> TFDS ArrayRecord in $tfds_dir"
build_synth_faces
echo "== stage 1 (images): $steps_image steps -> $work/stage1   ($(( $(date +%s) - start ))s so far)"
train_stage image "$work/stage1" "$steps_image"
echo "== stage 2 (video, ICA): $steps_video steps -> $work/stage2   ($(( $(date +%s) - start ))s so far)"
train_stage video "$work/stage2" "$steps_video" --config.init.stage1_checkpoint="$work/stage1"
echo "== export + animate a held-out person   ($(( $(date +%s) - start ))s so far)"
rm -rf "$work/bundle"
"$py" -m mimaface_jax.export --workdir "$work/stage2" --out "$work/bundle"
"$py" -m mimaface_jax.data.synth_faces --dataset "$synth_dataset" --out_dir "$work/animate_inputs" \
  --split validation --person 0 --driver 1 --frames 30
"$py" -m mimaface_jax.animate --model "$work/bundle" --source "$work/animate_inputs/person.npz" \
  --driving "$work/animate_inputs/motion.npz" --out "$work/animate.mp4" --side_by_side --overwrite
echo "== done in $(( $(date +%s) - start ))s"
echo "samples: $work/stage2/samples/   metrics: $work/stage2/eval_metrics.json $work/stage2/metrics.jsonl"
echo "animation: $work/animate.mp4 (+ animate.json)   bundle: $work/bundle"
