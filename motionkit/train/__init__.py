"""Training motion adapters: the loop, EMA, checkpoints, MotionLoRA, image-conditioning."""
