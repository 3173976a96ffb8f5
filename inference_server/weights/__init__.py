"""Model weights on disk: the one folder layout (``layout``), fetching it from a hub (``fetch``)
and checking it from the safetensors headers alone (``check``).

``layout`` is pure Python; ``fetch`` needs ``huggingface_hub`` (the ``assets`` extra) and
``check`` the ``neural`` extra, both imported only when used.
"""
