#!/usr/bin/env bash
# Rebuild motionkit's tiny model family (motionkit/assets/tiny-family) from scratch, on CPU, offline.
# Every step is a motionkit command with a committed config (examples/tiny_family/) and a fixed seed;
# MODEL_CARD.md in the family folder records what this produced and how long it took.
#
#   scripts/make_tiny_family.sh            # everything: data, VAE, base, personalized (and on), motion adapter, encoder,
#                                          # ControlNet, zoom-in MotionLoRA, high-noise adapter,
#                                          # low-noise encoder, zoom-in MotionLoRA without its words,
#                                          # ControlNet trained on twice, ship, eval
#   STAGES="motion ship eval" scripts/make_tiny_family.sh   # only some stages (each reads the previous outputs)
#
# Work files go to motionkit-out/tiny-family/ (git-ignored). Torch uses at most 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
MK="$PY -m motionkit"
WORK=motionkit-out/tiny-family
FAMILY=motionkit/assets/tiny-family
CONFIGS=examples/tiny_family
STAGES=${STAGES:-"data vae base personalized personalized_neon motion encoder controlnet motion_lora_zoom motion_high_noise encoder_low_noise motion_lora_zoom_words controlnet_on controlnet_more ship eval"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

wants() { [[ " $STAGES " == *" $1 "* ]]; }
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "[$name] $((SECONDS - t0)) s"; }
# A training stage whose final output exists is finished and skipped; otherwise it resumes from its newest
# checkpoint (or starts): a killed run picks up where it stopped.
train_stage() {
  local name=$1 command=$2 done=$WORK/$1/$3
  if [[ -e "$done" ]]; then echo "[$name] done ($done exists): skipped"; return; fi
  timed "$name" $MK "$command" --config "$CONFIGS/$name.yaml" --resume latest
}

if wants data; then
  # The world, rendered twice: the natural style (base model, motion adapter; with depth and edge maps for
  # the ControlNet) and neon (personalized model).
  timed data-natural $PY -m motionkit.data.world "$WORK/data/natural" --clips 2000 --style natural --seed 1 --images-per-clip 2 --maps depth,edges
  timed data-neon $PY -m motionkit.data.world "$WORK/data/neon" --clips 800 --style neon --seed 2 --images-per-clip 2
fi
wants vae && train_stage vae train-image vae
wants base && train_stage base train-image pipeline
wants personalized && train_stage personalized train-image pipeline
# That fine-tune trained on at a higher lr until its frames are nearer neon than natural: the one that ships.
wants personalized_neon && train_stage personalized_neon train-image pipeline
wants motion && train_stage motion train summary.json
# The SparseCtrl RGB encoder, trained against the frozen base and the frozen motion adapter of stage "motion".
wants encoder && train_stage encoder train summary.json
# A depth ControlNet (per frame, on data/natural/maps/depth/), against the same frozen base and motion adapter.
wants controlnet && train_stage controlnet train summary.json
# A MotionLoRA for one camera move, on the clips captioned "camera zooming in" only.
wants motion_lora_zoom && train_stage motion_lora_zoom train summary.json
# The adapter of stage "motion" trained on with the velocity weighting (high noise gets its share): the adapter
# that ships. The encoder, ControlNet and MotionLoRA above stay trained against stage "motion"'s adapter.
wants motion_high_noise && train_stage motion_high_noise train summary.json
# The encoder of stage "encoder" trained on against that adapter with plain epsilon errors: the encoder that ships.
wants encoder_low_noise && train_stage encoder_low_noise train summary.json
# The zoom-in MotionLoRA that ships: against the adapter that ships, on the zoom-in clips with those words taken
# out of their captions, so the LoRA carries the move.
wants motion_lora_zoom_words && train_stage motion_lora_zoom_words train summary.json
# The ControlNet of stage "controlnet" trained on against the adapter that ships, then on again at half the
# learning rate: the ControlNet that ships.
wants controlnet_on && train_stage controlnet_on train summary.json
wants controlnet_more && train_stage controlnet_more train summary.json

if wants ship; then
  rm -rf "$FAMILY/bases" "$FAMILY/adapters" "$FAMILY/encoders" "$FAMILY/controlnets" "$FAMILY/loras"
  mkdir -p "$FAMILY/bases" "$FAMILY/adapters" "$FAMILY/encoders" "$FAMILY/controlnets" "$FAMILY/loras" "$FAMILY/examples"
  cp -r "$WORK/base/pipeline" "$FAMILY/bases/tiny-base"            # written in float16 by the config
  cp -r "$WORK/personalized_neon/pipeline" "$FAMILY/bases/tiny-personalized"
  $MK convert "$WORK/motion_high_noise/adapter" "$FAMILY/adapters/tiny-motion" --to motionkit --dtype fp16
  # The condition encoders ship as diffusers folders in float16, as the bases do.
  $PY - "$WORK/encoder_low_noise/encoder" "$FAMILY/encoders/tiny-sparsectrl-rgb" "$WORK/controlnet_more/controlnet" "$FAMILY/controlnets/tiny-controlnet-depth" <<'PYEOF'
import sys

import torch
from diffusers import ControlNetModel, SparseControlNetModel

for model_class, source, target in ((SparseControlNetModel, *sys.argv[1:3]), (ControlNetModel, *sys.argv[3:5])):
    model_class.from_pretrained(source).to(torch.float16).save_pretrained(target, safe_serialization=True)
PYEOF
  cp "$WORK/motion_lora_zoom_words/motion_lora.safetensors" "$FAMILY/loras/tiny-zoom-in.safetensors"
  # A conditioning frame the models never saw (the first frame of a fresh world clip at the family's size),
  # its caption as a matching prompt, and the same frame in the personalized variant's style (what that
  # model's users animate: a still it made).
  $PY - "$FAMILY/examples/conditioning" <<'PYEOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from motionkit.data.world import caption, random_spec, render_clip
from motionkit.family import EXAMPLE_WORLD_SEED, PERSONALIZED_STYLE

spec = random_spec(np.random.default_rng(EXAMPLE_WORLD_SEED), frames=1, size=64)
Image.fromarray(render_clip(spec)[0]).save(sys.argv[1] + ".png")
Path(sys.argv[1] + ".txt").write_text(caption(spec) + "\n", encoding="utf-8")
styled = random_spec(np.random.default_rng(EXAMPLE_WORLD_SEED), style=PERSONALIZED_STYLE, frames=1, size=64)
Image.fromarray(render_clip(styled)[0]).save(sys.argv[1] + "-personalized.png")
PYEOF
  # A photo from outside the world (CC0, motionkit/assets/examples/photos/SOURCES.md) for the app's examples,
  # declared with the image inversion that keeps a photo's layout (MODEL_CARD.md, "Photos out of the world").
  cp motionkit/assets/examples/photos/coffee.jpg "$FAMILY/examples/photo-coffee.jpg"
  # The world's palette, which the declaration's colour signal for unfamiliar images reads (MODEL_CARD.md,
  # "Photos out of the world"); written before anything reads the declaration, which checks it.
  timed palette $PY "$CONFIGS/calibrate_familiarity.py" --family "$FAMILY" --write-palette --photos motionkit/assets/examples/photos --out "$WORK/familiarity"
  du -sh "$FAMILY"
fi
if wants eval; then
  timed eval $PY "$CONFIGS/evaluate.py" --family "$FAMILY" --out "$WORK/eval"
  # Where the world ends for the image model: the limits motionkit-app.json declares for unfamiliar images
  # (unfamiliar_images) are the "suggested limits" this prints; after retraining a base, update them there.
  timed familiarity $PY "$CONFIGS/calibrate_familiarity.py" --family "$FAMILY" --photos motionkit/assets/examples/photos --out "$WORK/familiarity"
  # The image-to-video targets, through motionkit animate with the family's defaults (MODEL_CARD.md).
  timed eval-i2v $PY "$CONFIGS/evaluate_i2v.py" --family "$FAMILY" --photos motionkit/assets/examples/photos --out "$WORK/eval-i2v"
  # Does the MotionLoRA move the camera? Against the adapter alone, on held-out scenes (MODEL_CARD.md).
  timed eval-motion-lora $PY "$CONFIGS/evaluate_motion_lora.py" --family "$FAMILY" --text-to-video --out "$WORK/eval-motion-lora"
  # Does the depth ControlNet draw the scene its depth video describes? Against text-to-video without it (MODEL_CARD.md).
  timed eval-controlnet $PY "$CONFIGS/evaluate_controlnet.py" --family "$FAMILY" --out "$WORK/eval-controlnet"
fi
