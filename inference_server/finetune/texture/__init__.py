"""Texture style LoRAs: the SDXL multi-view texture model fine-tuned on a studio's textured assets.

``assets`` reads textured meshes (GLB/glTF with a base colour, OBJ + MTL, coloured PLY),
``render`` draws their six views exactly as the texture model sees them, ``prepare`` caches
VAE latents and geometry maps (``finetune.prepcache``), ``data`` reads that cache and makes
each sample's random draws, ``trainer`` trains the LoRA on the shared fine-tuning
infrastructure (config, DDP, checkpoints, loss log, progress, LoRA file).
"""
