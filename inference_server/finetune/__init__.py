"""Fine-tuning (``train`` extra: peft, pyyaml): LoRAs for the Step1X-3D models from a studio's own data.

Shared infrastructure, one job per module: ``config`` (YAML/JSON with upstream's key names),
``seeding`` (counter-based per-sample randomness, so one process and N ranks draw the same
numbers), ``distributed`` (torchrun / DistributedDataParallel), ``checkpoint`` (atomic
save, exact resume), ``losslog`` (``loss.csv`` + a loss plot PNG), ``progress`` (step, loss,
samples/s, ETA), ``prepcache`` (the cached, resumable data preparation and its report) and
``lorafile`` (the safetensors LoRA in the PEFT/diffusers layout with metadata). The geometry
trainer lives in ``finetune.geometry``.
"""
