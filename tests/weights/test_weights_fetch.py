"""``step1x3d weights fetch`` against a hub stand-in on loopback (tests/weights/hub_standin.py: the
one mock here, because the real hub cannot be reached), serving tiny weights in the official
layouts. The CLI runs as a real subprocess with real huggingface_hub."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import load_file, save_file  # noqa: E402

from inference_server.weights.catalog import SDXL_REPO, SDXL_VAE_REPO, STEP1X3D_REPO  # noqa: E402
from inference_server.weights.fetch import human_size  # noqa: E402

from .hub_standin import FakeRepo, HubStandIn  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "tests/neural/geometry"), str(ROOT / "tests/neural/texture")]


def _files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fp16(path: Path, tmp: Path) -> bytes:
    out = tmp / "fp16.safetensors"
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(path)).items()},
              str(out))
    return out.read_bytes()


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FakeRepo]:
    from geometry_tiny_models import write_tiny_repo
    from texture_tiny_models import build_tiny_weights

    tmp = tmp_path_factory.mktemp("hub_files")
    geo = write_tiny_repo(tmp / "step")
    tex = build_tiny_weights(tmp / "tex")
    step = _files(geo)
    step["Step1X-3D-Texture/step1x-3d-ig2v.safetensors"] = tex["adapter_file"].read_bytes()
    # Files of the real repository that our loaders never read.
    step["README.md"] = b"# Step1X-3D\n"
    step["Step1X-3D-Geometry-1300m/visual_eature_extractor/preprocessor_config.json"] = b"{}"
    sdxl = _files(tex["sdxl_dir"])
    sdxl["tokenizer/special_tokens_map.json"] = b'{"bos_token": "<|startoftext|>"}'
    sdxl["unet/diffusion_pytorch_model.fp16.safetensors"] = _fp16(tex["sdxl_dir"] / "unet/diffusion_pytorch_model.safetensors", tmp)
    for enc in ("text_encoder", "text_encoder_2"):
        sdxl[f"{enc}/model.fp16.safetensors"] = _fp16(tex["sdxl_dir"] / enc / "model.safetensors", tmp)
    sdxl.update({"model_index.json": b"{}", "sd_xl_base_1.0.safetensors": b"\0" * 64, "vae/config.json": b"{}",
                 "vae/diffusion_pytorch_model.safetensors": b"\0" * 64, "text_encoder/model.onnx": b"\0" * 64})
    vae = _files(tex["vae_dir"])
    vae.update({"sdxl_vae.safetensors": b"\0" * 64, "diffusion_pytorch_model.bin": b"\0" * 64})
    return {STEP1X3D_REPO: FakeRepo(step), SDXL_REPO: FakeRepo(sdxl, sha="1" * 40), SDXL_VAE_REPO: FakeRepo(vae, sha="2" * 40)}


EXPECTED = {
    STEP1X3D_REPO: {"Step1X-3D-Geometry-1300m/scheduler/scheduler_config.json",
                    *(f"Step1X-3D-Geometry-1300m/{c}/{f}" for c in ("transformer", "vae", "visual_encoder")
                      for f in ("config.json", "diffusion_pytorch_model.safetensors")),
                    "Step1X-3D-Texture/step1x-3d-ig2v.safetensors"},
    SDXL_REPO: {"scheduler/scheduler_config.json", "tokenizer/special_tokens_map.json",
                *(f"{t}/{f}" for t in ("tokenizer", "tokenizer_2") for f in ("vocab.json", "merges.txt", "tokenizer_config.json")),
                *(f"{e}/{f}" for e in ("text_encoder", "text_encoder_2") for f in ("config.json", "model.fp16.safetensors")),
                "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"},
    SDXL_VAE_REPO: {"config.json", "diffusion_pytorch_model.safetensors"},
}
LOCAL = {STEP1X3D_REPO: "", SDXL_REPO: "stable-diffusion-xl-base-1.0/", SDXL_VAE_REPO: "sdxl-vae-fp16-fix/"}


@pytest.fixture()
def hub(repos: dict[str, FakeRepo]):
    standin = HubStandIn(repos)
    url = standin.start()
    yield standin, url
    standin.stop()


# huggingface_hub writes a download to disk in 10 MB chunks; tiny files need small ones for a
# partial download to leave anything to resume from (library buffering only; the logic is the same).
RUNNER = ("import sys, huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 1024; "
          "from inference_server.cli import main; sys.exit(main(sys.argv[1:]))")


def fetch_command(target: Path, url: str, *extra: str, via_env: bool = False,
                  token: str | None = None) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(target.parent / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token  # huggingface_hub's usual place
    args = [sys.executable, "-c", RUNNER, "weights", "fetch", "--dir", str(target), "--quiet", *extra]
    if via_env:
        env["HF_ENDPOINT"] = url
    else:
        args += ["--endpoint", url]
    return args, env


def run_fetch(target: Path, url: str, *extra: str, via_env: bool = False,
              token: str | None = None) -> subprocess.CompletedProcess[str]:
    args, env = fetch_command(target, url, *extra, via_env=via_env, token=token)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def fetched_paths(standin: HubStandIn) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in standin.downloads():
        out.setdefault(r.repo, set()).add(r.path)
    return out


def test_fetch_exact_files_resume_and_layout(hub, repos: dict[str, FakeRepo], tmp_path: Path) -> None:
    standin, url = hub
    cut = (SDXL_REPO, "unet/diffusion_pytorch_model.fp16.safetensors")
    stall = (SDXL_VAE_REPO, "diffusion_pytorch_model.safetensors")  # the last file of the plan
    standin.cut_once.add(cut)
    standin.stall_once.add(stall)
    target = tmp_path / "weights"
    # Run 1 is killed (like Ctrl-C or a crash) halfway through the last file.
    args, env = fetch_command(target, url)
    proc1 = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert standin.stalled.wait(120), "the fetch never reached the stalled file"
        time.sleep(0.5)  # let the client write what it received
    finally:
        proc1.kill()
        out1, _ = proc1.communicate()
        standin.release.set()
    total = sum(len(repos[r].files[p]) for r, paths in EXPECTED.items() for p in paths)
    assert f"{sum(map(len, EXPECTED.values()))} files, {human_size(total)} in all; {human_size(total)} to download" in out1
    # Within run 1 the dropped connection was resumed with a range request, not restarted.
    gets = [r.range_start for r in standin.downloads(SDXL_REPO) if r.path == cut[1]]
    size = len(repos[SDXL_REPO].files[cut[1]])
    assert len(gets) == 2 and gets[0] is None and gets[1] is not None and 0 < gets[1] <= size // 2

    proc = run_fetch(target, url)  # run 2 picks up where run 1 died
    assert proc.returncode == 0, proc.stderr
    assert fetched_paths(standin) == EXPECTED  # nothing we never load, no fp32 copy, no refiner
    vae_gets = [r.range_start for r in standin.downloads(SDXL_VAE_REPO) if r.path == stall[1]]
    vae_size = len(repos[SDXL_VAE_REPO].files[stall[1]])
    assert len(vae_gets) == 2 and vae_gets[0] is None and vae_gets[1] is not None and 0 < vae_gets[1] <= vae_size // 2
    # Run 2 downloaded only the unfinished file.
    assert [r.path for r in standin.downloads()].count(stall[1]) == 2 and len(standin.downloads()) == sum(map(len, EXPECTED.values())) + 2
    # Every planned file is on disk with the hub's bytes, in the layout serve understands.
    for repo, paths in EXPECTED.items():
        for p in paths:
            assert (target / (LOCAL[repo] + p)).read_bytes() == repos[repo].files[p], p
    from inference_server.weights.check import check_folder
    from inference_server.weights.layout import find_layout

    assert check_folder(target) == []
    layout = find_layout(target)
    assert set(layout.geometry) == {"base"}
    assert None not in (layout.adapter, layout.sdxl, layout.sdxl_vae)  # the texture stage's three parts
    # The texture loader reads the fp16-only SDXL folder as it is (cast on load).
    from inference_server.neural.texture.loading import load_models

    assert layout.adapter is not None and layout.sdxl is not None and layout.sdxl_vae is not None
    models = load_models(layout.adapter, layout.sdxl, layout.sdxl_vae, torch.float32)
    for module, name in ((models.text_encoder_2, "text_encoder_2/model.fp16.safetensors"),
                         (models.unet, "unet/diffusion_pytorch_model.fp16.safetensors")):
        saved = load_file(str(layout.sdxl / name))
        key = sorted(k for k in saved if k.endswith("weight"))[0]
        assert saved[key].dtype == torch.float16 and torch.equal(module.state_dict()[key], saved[key].float())

    # A third run finds everything complete and verified: no file is downloaded again.
    before = len(standin.downloads())
    proc = run_fetch(target, url, via_env=True)
    assert proc.returncode == 0, proc.stderr
    assert len(standin.downloads()) == before


def test_fetch_refetches_corrupted_files(hub, repos: dict[str, FakeRepo], tmp_path: Path) -> None:
    standin, url = hub
    target = tmp_path / "weights"
    adapter = "Step1X-3D-Texture/step1x-3d-ig2v.safetensors"
    standin.corrupt[(STEP1X3D_REPO, adapter)] = 1  # the mirror serves damaged bytes once
    proc = run_fetch(target, url, "--models", "geometry-label,texture")
    assert proc.returncode == 0, proc.stderr
    assert f"{adapter}: its SHA-256 differs from the hub's; fetching it again" in proc.stdout
    assert (target / adapter).read_bytes() == repos[STEP1X3D_REPO].files[adapter]
    assert "Step1X-3D-Geometry-Label-1300m/label_encoder/diffusion_pytorch_model.safetensors" in fetched_paths(standin)[STEP1X3D_REPO]

    # Damage on disk (same size, so only the hash can tell) is found on the next run and repaired.
    weights = target / "Step1X-3D-Geometry-Label-1300m/transformer/diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    before, asked = len(standin.downloads()), len(standin.requests)
    proc = run_fetch(target, url, "--models", "geometry-label,texture", token="hf_standin_token")
    assert proc.returncode == 0, proc.stderr
    # The token from HF_TOKEN goes with the listing, the metadata request and the download.
    assert {r.authorization for r in standin.requests[asked:]} == {"Bearer hf_standin_token"}
    assert "transformer/diffusion_pytorch_model.safetensors: its SHA-256 differs" in proc.stdout
    assert [r.path for r in standin.downloads()[before:]] == [weights.relative_to(target).as_posix()]
    assert weights.read_bytes() == repos[STEP1X3D_REPO].files[weights.relative_to(target).as_posix()]

    # A mirror that keeps serving a damaged file ends the fetch with one sentence.
    standin.corrupt[(SDXL_VAE_REPO, "diffusion_pytorch_model.safetensors")] = 2
    (target / "sdxl-vae-fp16-fix/diffusion_pytorch_model.safetensors").unlink()
    proc = run_fetch(target, url, "--models", "texture")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {SDXL_VAE_REPO}/diffusion_pytorch_model.safetensors fetched twice and still its SHA-256 differs "
        "from the hub's; the mirror may be serving a damaged file")


def test_fetch_unknown_model_and_missing_repo(hub, tmp_path: Path) -> None:
    standin, url = hub
    proc = run_fetch(tmp_path / "w", url, "--models", "geometry,shiny")
    assert proc.returncode == 2 and "unknown model shiny" in proc.stderr
    # --revision applies to the Step1X-3D repository; files come from the commit its listing names.
    proc = run_fetch(tmp_path / "r", url, "--models", "geometry", "--revision", "v1.1")
    assert proc.returncode == 0, proc.stderr
    listings = [r for r in standin.requests if not r.path]
    assert [(r.repo, r.revision) for r in listings] == [(STEP1X3D_REPO, "v1.1")]
    assert {r.revision for r in standin.requests if r.path} == {standin.repos[STEP1X3D_REPO].sha}
    del standin.repos[SDXL_VAE_REPO]
    proc = run_fetch(tmp_path / "w", url, "--models", "texture")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {SDXL_VAE_REPO} was not found on {url} (or it needs a token: `hf auth login` or HF_TOKEN)"
    assert not (tmp_path / "w").exists()  # nothing is written before the whole plan is known


def test_free_space_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    import shutil as sh

    from blender_addon.protocol.errors import Step1X3DError
    from inference_server.weights.fetch import PlannedFile, check_space

    target = tmp_path / "new" / "weights"
    free = sh.disk_usage(tmp_path).free
    small = PlannedFile("a/b", "0" * 40, "x.safetensors", target, 1000, "0" * 64)
    assert check_space(target, [small]) == 1000
    huge = PlannedFile("a/b", "0" * 40, "y.safetensors", target, free, "0" * 64)  # plus the margin: too much
    with pytest.raises(Step1X3DError) as info:
        check_space(target, [small, huge])
    assert info.value.code == "fetch_failed"
    message = str(info.value)  # the free space itself moves (other processes write to this disk)
    assert message.startswith(f"the download needs {human_size(free + 1000)} in {target} but only ")
    assert message.endswith(" GB is free; free some space or choose another --dir")
    assert not (tmp_path / "new").exists()
    # A partial download counts for what it already holds.
    target.mkdir(parents=True)
    (target / "x.safetensors.part").write_bytes(b"\0" * 600)
    assert check_space(target, [small]) == 400
