"""A trained geometry LoRA through a real ``step1x3d serve --geometry-lora-dir DIR`` process."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from blender_addon.client import ErrorEvent, Rejected, Result, ResultReady, ServerConnection, StateChanged, Welcome
from blender_addon.protocol.options import specs_from_wire
from blender_addon.protocol.settings import JobSettings, SettingsError
from tests.server.harness import ServerProcess, collect, events_of, running_server

pytest.importorskip("zmq")


@pytest.fixture(scope="module")
def lora_server(tiny_model: Path, trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    loras = tmp_path_factory.mktemp("geometry-loras")
    shutil.copy(trained.lora, loras / "studio-props.safetensors")
    yield from running_server(tmp_path_factory.mktemp("lora-results"), "--weights", str(tiny_model),
                              "--geometry-lora-dir", str(loras), backend="step1x3d")


def _image() -> bytes:
    h, w = 96, 80
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[((xx - 40) / 26.0) ** 2 + ((yy - 48) / 38.0) ** 2 <= 1.0] = (210, 60, 40, 255)
    buf = io.BytesIO()
    Image.fromarray(img, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _failed(e: Any) -> bool:
    return isinstance(e, (ErrorEvent, Rejected)) or (isinstance(e, StateChanged) and e.state == "failed")


def _job(conn: ServerConnection, **options: Any) -> Any:
    jid = f"l-{uuid.uuid4().hex[:12]}"
    conn.submit(jid, [_image()], JobSettings(mode="geometry", steps=3, max_faces=5_000, seed=11,
                                             options={"octree_resolution": 64, **options}))
    events: list[Any] = collect(conn, lambda e: (isinstance(e, ResultReady) or _failed(e))
                                and getattr(e, "job_id", None) == jid, timeout_s=240.0)
    if _failed(events[-1]):
        return events[-1]
    conn.fetch(jid)
    return collect(conn, lambda e: isinstance(e, Result) and e.job_id == jid, timeout_s=60.0)[-1]


@pytest.mark.slow  # a real server process (torch import, tiny model load) and six tiny geometry jobs: ~40 s on 2 cores
def test_the_lora_changes_the_mesh_and_scale_zero_does_not(lora_server: ServerProcess) -> None:
    with ServerConnection(lora_server.address) as conn:
        conn.hello()
        collect(conn, lambda e: isinstance(e, Welcome))
        base = _job(conn)
        tuned = _job(conn, geometry_lora="studio-props", geometry_lora_scale=1.0)
        zero = _job(conn, geometry_lora="studio-props", geometry_lora_scale=0.0)
        escape = _job(conn, geometry_lora="../studio-props")
        missing = _job(conn, geometry_lora="nope")
        again = _job(conn)  # the LoRA was removed after its job
        conn.hello()
        welcome: Any = collect(conn, lambda e: isinstance(e, Welcome))[-1]
    assert isinstance(base, Result) and isinstance(tuned, Result) and isinstance(zero, Result)
    assert welcome.backends["step1x3d"]["geometry_loras"] == ["studio-props"]
    declared = {s.name: s for s in specs_from_wire(welcome.backends["step1x3d"]["options"])}
    assert declared["geometry_lora"].choices == ("", "studio-props") and declared["geometry_lora"].default == ""
    assert (declared["geometry_lora_scale"].minimum, declared["geometry_lora_scale"].maximum) == (0.0, 2.0)
    p0, p1, p2 = (np.asarray(r.mesh["positions"]) for r in (base, tuned, zero))
    assert p0.shape != p1.shape or float(np.abs(p0 - p1).max()) > 1e-3  # the LoRA moved the surface
    assert np.array_equal(p0, p2) and np.array_equal(base.mesh["faces"], zero.mesh["faces"])
    assert tuned.provenance["geometry_lora"] == {"name": "studio-props", "scale": 1.0}
    assert isinstance(again, Result) and np.array_equal(np.asarray(again.mesh["positions"]), p0)
    # Names outside the folder's listing are refused at submit, naming what the server offers.
    assert isinstance(escape, Rejected) and escape.code == "bad_settings"
    assert escape.message == "option geometry_lora must be one of '', studio-props, got '../studio-props'"
    assert isinstance(missing, Rejected) and "got 'nope'" in missing.message


def test_the_geometry_lora_options_are_checked_against_the_folders_listing() -> None:
    from inference_server.neural.options import GEOMETRY_LORA_SCALE, geometry_lora

    declared = (geometry_lora(["props"]), GEOMETRY_LORA_SCALE)
    s = JobSettings.from_wire({"options": {"geometry_lora": "props", "geometry_lora_scale": 0.5}}, declared)
    assert s.options == {"geometry_lora": "props", "geometry_lora_scale": 0.5}
    # A protocol 1.0 client's top-level keys land in the same options.
    assert JobSettings.from_wire({"geometry_lora": "props"}, declared).options["geometry_lora"] == "props"
    with pytest.raises(SettingsError, match="option geometry_lora_scale must be between 0.0 and 2.0"):
        JobSettings.from_wire({"options": {"geometry_lora_scale": 3.0}}, declared)
    with pytest.raises(SettingsError, match="option geometry_lora must be one of '', props, got 7"):
        JobSettings.from_wire({"options": {"geometry_lora": 7}}, declared)
