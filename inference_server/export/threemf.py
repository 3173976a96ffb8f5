"""3MF (3D Manufacturing Format) for printing: one welded mesh object, millimetres, Z up.

3MF is a zip of XML parts ([Content_Types].xml, _rels/.rels, 3D/3dmodel.model); the
model carries ``unit="millimeter"`` and the build platform's Z-up frame, so glTF's
(x, y, z) becomes (x, -z, y). Vertices are shared (welded at UV seams), as the core
spec requires for a manifold mesh. Geometry only: printers slice shape, not PBR maps.
Producer and the AI-generated label are model metadata (Application, Description)
plus the provenance under our own namespace.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from blender_addon.protocol.provenance import BACKEND, SEED, labelled

from ..assets import Asset
from .glb import IPTC_AI_SOURCE, generator_string, json_safe
from .weld import weld

CORE_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
OUR_NS = "https://github.com/stepfun-ai/Step1X-3D/provenance"  # names our metadata, never fetched
MM_PER_METRE = 1000.0

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
    "</Relationships>"
)


def _rows(fmt: str, array: np.ndarray) -> str:
    return (fmt * array.shape[0]) % tuple(array.ravel().tolist()) if array.shape[0] else ""


def model_xml(asset: Asset) -> str:
    """The 3D/3dmodel.model part for ``asset`` (LOD 0)."""
    positions, faces = weld(asset.mesh.positions, asset.mesh.faces)
    gltf = positions * MM_PER_METRE
    zup = np.column_stack([gltf[:, 0], -gltf[:, 2], gltf[:, 1]])  # Y up -> Z up, still right-handed
    prov = json_safe(labelled(asset.provenance))
    description = f"AI-generated 3D asset ({IPTC_AI_SOURCE}); backend {prov.get(BACKEND, 'unknown')}"
    if "seed" in prov:
        description += f", seed {prov[SEED]}"
    meta = [
        ("Application", generator_string(prov)),
        ("Title", "step1x3d_asset"),
        ("Description", description),
        ("s1x:provenance", json.dumps(prov, sort_keys=True)),
    ]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<model unit="millimeter" xml:lang="en-US" xmlns="{CORE_NS}" xmlns:s1x="{OUR_NS}">\n',
        *(f"<metadata name={quoteattr(k)}>{escape(v)}</metadata>\n" for k, v in meta),
        '<resources>\n<object id="1" type="model" name="step1x3d_asset">\n<mesh>\n<vertices>\n',
        _rows('<vertex x="%.4f" y="%.4f" z="%.4f"/>\n', zup),
        "</vertices>\n<triangles>\n",
        _rows('<triangle v1="%d" v2="%d" v3="%d"/>\n', faces.astype(np.int64)),
        '</triangles>\n</mesh>\n</object>\n</resources>\n<build>\n<item objectid="1"/>\n</build>\n</model>\n',
    ]
    return "".join(parts)


def threemf_bytes(asset: Asset) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("3D/3dmodel.model", model_xml(asset))
    return buf.getvalue()


def write_3mf(asset: Asset, path: Path) -> list[Path]:
    from .files import write_atomic  # lazy: files dispatches to this module

    return [write_atomic(Path(path), threemf_bytes(asset))]


__all__ = ["model_xml", "threemf_bytes", "write_3mf"]
