#!/usr/bin/env bash
# The method's ablations at the CPU demo's budget (configs/tiny.py, SynthFaces, 2 cores):
#   1. build SynthFaces as the demo does (shared with a demo run in the same WORKDIR),
#   2. train the full model (stage 1 + stage 2) and the training-time variants with the same steps:
#      video_no_ica (stage 2 without inter-clip context, from the full stage 1) and
#      image_no_mia + video_no_mia (both stages without MIA's motion / identity modulation),
#   3. evaluate each on the same held-out validation videos (cross-identity, exact ground truth),
#      and the full model again with the inference-time switches (ica=off, motion_tokens=off, identity=off),
#   4. write the table (with this command, the machine and the date) into docs/RESULTS.md's marked block.
# usage: bash scripts/ablate.sh [WORKDIR] [STEPS_IMAGE] [STEPS_VIDEO]   (defaults: workdirs/ablate and the demo's steps)
# Installs the runtime set into ./.venv first (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n 2,11p "$0"; exit 0
fi
command_line="bash scripts/ablate.sh $*"
work="${1:-workdirs/ablate}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
source scripts/synth_demo_lib.sh
steps_image="${2:-$DEMO_STEPS_IMAGE}"
steps_video="${3:-$DEMO_STEPS_VIDEO}"
check_steps "$steps_image" "$steps_video"
bash scripts/install.sh runtime
start=$(date +%s)
say() { echo "== $*   ($(( $(date +%s) - start ))s so far)"; }

say "SynthFaces -> $tfds_dir"
build_synth_faces
# a finished run (its last checkpoint at the final step) is kept; anything else is trained from scratch
train() {  # train VARIANT DIR STEPS [flags]
  local variant=$1 dir=$2 steps=$3
  if [ -d "$dir/checkpoints/$steps" ]; then say "$variant: done before ($dir)"; return; fi
  rm -rf "$dir"
  say "$variant: $steps steps -> $dir"
  train_stage "$@"
}
train image "$work/image" "$steps_image"
train video "$work/video" "$steps_video" --config.init.stage1_checkpoint="$work/image"
train video_no_ica "$work/video_no_ica" "$steps_video" --config.init.stage1_checkpoint="$work/image"
train image_no_mia "$work/image_no_mia" "$steps_image"
train video_no_mia "$work/video_no_mia" "$steps_video" --config.init.stage1_checkpoint="$work/image_no_mia"

# the same 8 held-out videos of 12 frames (3 clips, 2 clip boundaries each) for every row
evaluate() {  # evaluate NAME RUN [--ablate ...]
  local name=$1 run=$2
  shift 2
  say "evaluate $name"
  rm -rf "$work/eval/$name"
  "$py" -m mimaface_jax.evaluate --model "$run" --data "$synth_dataset:validation" --out "$work/eval/$name" \
    --num_videos 8 --frames 12 --quiet "$@"
}
evaluate full "$work/video"
evaluate full_ica_off "$work/video" --ablate ica=off
evaluate full_motion_tokens_off "$work/video" --ablate motion_tokens=off
evaluate full_identity_off "$work/video" --ablate identity=off
evaluate no_ica "$work/video_no_ica"
evaluate no_mia "$work/video_no_mia"

"$py" -m mimaface_jax.metrics.ablation_table --out docs/RESULTS.md --command "$command_line" \
  --elapsed $(( $(date +%s) - start )) \
  "full model=$work/eval/full" "full model, ICA off at inference=$work/eval/full_ica_off" \
  "full model, motion tokens off at inference=$work/eval/full_motion_tokens_off" \
  "full model, identity off at inference=$work/eval/full_identity_off" \
  "trained without ICA (video_no_ica)=$work/eval/no_ica" "trained without MIA (image/video_no_mia)=$work/eval/no_mia"
say "done: docs/RESULTS.md, evaluations in $work/eval/"
