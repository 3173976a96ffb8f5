"""The keys of an asset's provenance, spelt once for the server, the exporters, the CLI and the add-on.

A result's ``provenance`` map travels in the ``result`` message, becomes the GLB's
``asset.extras`` (and node extras), the other formats' metadata, and in Blender one
custom property per key, named :data:`PROVENANCE_PREFIX` + key. Every path that
makes an asset (the server's worker, a Ray replica, ``step1x3d generate`` in-process)
fills the common keys through the one ``finalize_asset`` (``inference_server/server/
job_runner.py``), so the same job gives the same provenance whichever path ran it,
apart from :data:`PER_RUN_KEYS`.

Backends may add their own keys (the weight-free backend's ``views``/``inferred``,
the neural backend's ``geometry_model``/``geometry_lora``); they pass through unchanged.
Lives in ``blender_addon`` because the add-on is bundled into Blender alone and reads
these keys. Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AI_GENERATED = "ai_generated"  # always True: the asset is labelled as made by a model
GENERATOR = "generator"  # "Step1X-3D for Blender <version>"
BACKEND = "backend"  # the backend's name ("inflate", "step1x3d", ...)
SEED = "seed"
SETTINGS = "settings"  # the job's settings as sent on the wire
SOURCE_IMAGES = "source_images"  # file names of the reference images, front view first
JOB_ID = "job_id"
STAGE_SECONDS = "stage_seconds"  # seconds each stage took (the asset's timings), written by the GLB exporter
# Added by ``step1x3d convert``:
CONVERTED_FROM = "converted_from"  # the file name the conversion read
SIZE = "size"  # largest dimension asked for, metres
CONVERTED_SCALE = "converted_scale"  # the factor applied to reach it
# Written by the weight-free backend (pipeline/inflate.py, what_was_seen); the panel's provenance line reads them.
VIEWS = "views"  # the views given, e.g. ["front", "right"]
INFERRED = "inferred"  # what was inferred rather than seen: "depth", "back", "sides"

# Keys that differ between two runs of the same job (everything else is equal).
PER_RUN_KEYS: frozenset[str] = frozenset({JOB_ID, STAGE_SECONDS})

# Blender custom properties: one per provenance key, plus the add-on's own two.
PROVENANCE_PREFIX = "step1x3d_"
NOTES_PROPERTY = PROVENANCE_PREFIX + "notes"  # the server's notes, one per line
LOD_PROPERTY = PROVENANCE_PREFIX + "lod"  # on each LOD child: its level (1, 2, ...)


def property_name(key: str) -> str:
    """The Blender custom property that holds provenance ``key``."""
    return PROVENANCE_PREFIX + key


def labelled(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance`` with the AI label set, as every writer stores it."""
    return {**provenance, AI_GENERATED: True}


__all__ = [
    "AI_GENERATED",
    "BACKEND",
    "CONVERTED_FROM",
    "CONVERTED_SCALE",
    "GENERATOR",
    "INFERRED",
    "JOB_ID",
    "LOD_PROPERTY",
    "NOTES_PROPERTY",
    "PER_RUN_KEYS",
    "PROVENANCE_PREFIX",
    "SEED",
    "SETTINGS",
    "SIZE",
    "SOURCE_IMAGES",
    "STAGE_SECONDS",
    "VIEWS",
    "labelled",
    "property_name",
]
