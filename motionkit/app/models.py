"""The app's models folder: the layout lives in ``motionkit.models_folder``, which the library shares."""

from motionkit.models_folder import DEFAULT_MODELS_DIR, KINDS, ModelsFolder, write_demo_image_lora, write_demo_models

__all__ = ["DEFAULT_MODELS_DIR", "KINDS", "ModelsFolder", "write_demo_image_lora", "write_demo_models"]
