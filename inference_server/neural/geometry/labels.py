"""Job settings -> the Label model's label dict (upstream's vocabulary).

The options' choices (``neural/options.py``: symmetry, edge_type, pose) are the label tables' classes plus
``auto``. All ``auto`` means no label at all (upstream's default: the empty label on both CFG
halves); otherwise the chosen values are passed and any ``auto`` among them takes the table's
class 0, exactly as an absent key does upstream.
"""

from __future__ import annotations

from typing import Any

from blender_addon.protocol.settings import JobSettings

from ...pipeline.options import option_value
from ..options import EDGE_TYPE, POSE, SYMMETRY

SYMMETRY_TO_LABEL = {"asymmetric": "asymmetry", "symmetric": "x"}  # "x": mirror-symmetric left/right
EDGE_TYPE_TO_LABEL = {"normal": "normal", "smooth": "smooth", "sharp": "sharp"}
POSE_TO_LABEL = {"other": "unknown", "t_pose": "t-pose", "a_pose": "a-pose"}


def labels_from_settings(settings: JobSettings) -> dict[str, Any] | None:
    label: dict[str, Any] = {}
    symmetry, edge_type, pose = (option_value(settings, spec) for spec in (SYMMETRY, EDGE_TYPE, POSE))
    if symmetry != "auto":
        label["symmetry"] = SYMMETRY_TO_LABEL[symmetry]
    if edge_type != "auto":
        label["edge_type"] = EDGE_TYPE_TO_LABEL[edge_type]
    if pose != "auto":
        label["pose"] = POSE_TO_LABEL[pose]
    return label or None
