"""Per-backend options through a real server process: advertised in welcome, checked on submit.

The shared server runs ``tests.server.pipelines:ScriptedPipeline``, which declares one option
(``behaviour``); nothing here is mocked.
"""

from __future__ import annotations

import uuid

from blender_addon.client import Rejected, Result, ResultReady, ServerConnection, Welcome
from blender_addon.protocol.options import specs_from_wire
from blender_addon.protocol.settings import JobSettings

from .harness import collect, png_bytes
from .pipelines import BEHAVIOUR, BEHAVIOURS, scripted


def _rejection(conn: ServerConnection, settings: JobSettings | dict) -> Rejected:
    jid = f"o-{uuid.uuid4().hex[:12]}"
    conn.submit(jid, [png_bytes()], settings)  # type: ignore[arg-type]
    return collect(conn, lambda e: isinstance(e, Rejected) and e.job_id == jid)[-1]


def test_welcome_advertises_the_active_backends_options(conn: ServerConnection) -> None:
    conn.hello()
    welcome = collect(conn, lambda e: isinstance(e, Welcome))[-1]
    specs = specs_from_wire(welcome.backends[welcome.active_backend]["options"])
    assert specs == (BEHAVIOUR,)
    assert specs[0].choices == BEHAVIOURS and specs[0].default == "fast"
    assert welcome.settings["defaults"]["options"] == {}  # the common table has no backend knobs


def test_an_undeclared_or_out_of_range_option_is_rejected_naming_it(conn: ServerConnection) -> None:
    unknown = _rejection(conn, JobSettings(options={"inflate_depth": 0.5}))
    assert unknown.code == "bad_settings"
    assert unknown.message == "the server's backend has no option inflate_depth (its options: behaviour)"
    bad = _rejection(conn, scripted("dance"))
    assert bad.code == "bad_settings"
    assert bad.message.startswith("option behaviour must be one of fast, slow, crash")
    assert bad.message.endswith("got 'dance'")


def test_legacy_top_level_keys_the_backend_does_not_declare_are_ignored(conn: ServerConnection) -> None:
    # A protocol 1.0 client sends the old knobs at the top level; this backend declares none of them.
    jid = f"o-{uuid.uuid4().hex[:12]}"
    conn.submit(jid, [png_bytes()], {"seed": 4, "inflate_depth": 0.5, "lora": "clay", "symmetry": "auto"})
    collect(conn, lambda e: isinstance(e, ResultReady) and e.job_id == jid)
    conn.fetch(jid)
    result = collect(conn, lambda e: isinstance(e, Result) and e.job_id == jid)[-1]
    assert result.mesh["faces"].shape == (12, 3)  # the scripted cube: the job ran with the default behaviour
