"""The ``step1x3d`` backend's own options (a job's ``options`` map), declared once.

``Step1X3DBackend.capabilities()["options"]`` lists the ones this server can honour: the Label
model's labels only when that model is configured, the LoRA choices only with their folders
(the choices are the ``.safetensors`` names found there when the server started). The geometry
and texture stages read the values through these declarations.
"""

from __future__ import annotations

from collections.abc import Sequence

from blender_addon.protocol.options import OptionSpec

RESOLUTION = OptionSpec(
    "octree_resolution", "int", 384,
    "Grid resolution the surface is extracted at: finer detail, more time and memory", minimum=64, maximum=512,
    label="Octree Resolution")
# The Label model's tables (Step1X-3D-Geometry-Label-1300m) plus "auto" (no label): symmetry:
# asymmetry / x (mirror-symmetric left-right); edge type: normal / smooth / sharp; pose:
# unknown ("other") / T-pose / A-pose. labels.py maps them to upstream's vocabulary.
SYMMETRY = OptionSpec(
    "symmetry", "choice", "auto", "Label model: whether the object is mirror-symmetric left to right (auto: no label)",
    choices=("auto", "asymmetric", "symmetric"))
EDGE_TYPE = OptionSpec(
    "edge_type", "choice", "auto", "Label model: the kind of edges to generate (auto: no label)",
    choices=("auto", "normal", "smooth", "sharp"), label="Edge Type")
POSE = OptionSpec(
    "pose", "choice", "auto", "Label model: the pose of a character (auto: no label)",
    choices=("auto", "other", "t_pose", "a_pose"))
LABEL_OPTIONS = (SYMMETRY, EDGE_TYPE, POSE)
STYLE_LORA_SCALE = OptionSpec(
    "lora_scale", "float", 1.0, "How strongly the style LoRA is applied (0: not at all)", minimum=0.0, maximum=2.0,
    label="Style Strength")
GEOMETRY_LORA_SCALE = OptionSpec(
    "geometry_lora_scale", "float", 1.0, "How strongly the geometry LoRA is applied (0: not at all)",
    minimum=0.0, maximum=2.0, label="Geometry LoRA Strength")


def style_lora(names: Sequence[str]) -> OptionSpec:
    """The texture stage's style LoRA: one of the server's ``--lora-dir`` files, or "" for none."""
    return OptionSpec("lora", "choice", "", "Texture stage: a style LoRA from the server's LoRA folder",
                      choices=("", *names), label="Style")


def geometry_lora(names: Sequence[str]) -> OptionSpec:
    """The geometry stage's LoRA: one of the server's ``--geometry-lora-dir`` files, or "" for none."""
    return OptionSpec("geometry_lora", "choice", "",
                      "Geometry stage: a LoRA from the server's geometry LoRA folder (step1x3d finetune geometry)",
                      choices=("", *names), label="Geometry LoRA")


# For reading a job's value: the name and default are all a reader needs (the choices were
# checked against the folder's listing when the job was accepted).
STYLE_LORA = style_lora(())
GEOMETRY_LORA = geometry_lora(())

__all__ = ["EDGE_TYPE", "GEOMETRY_LORA", "GEOMETRY_LORA_SCALE", "LABEL_OPTIONS", "POSE", "RESOLUTION",
           "STYLE_LORA", "STYLE_LORA_SCALE", "SYMMETRY", "geometry_lora", "style_lora"]
