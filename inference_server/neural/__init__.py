"""The neural backend (``neural`` extra: torch, diffusers, transformers, safetensors, accelerate).

``geometry``: the Step1X-3D geometry models (image -> mesh); ``texture``: the texture model
(mesh + image -> PBR maps); ``backend``: both behind the server's Pipeline protocol. Nothing
here is imported by the weight-free install.
"""
