"""blendmask.model_zoo: configs inside the package, the reference checkpoints' catalog, and downloads
into a cache checked against a sha256 (served here by an HTTP server on 127.0.0.1)."""

import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch

from blendmask import model_zoo
from blendmask.model_zoo import CATALOG, ChecksumError
from conftest import REPO_ROOT, tiny_cfg

PACKAGE_CONFIGS = REPO_ROOT / "projects" / "BlendMask" / "blendmask" / "model_zoo" / "configs"


def test_config_files_live_in_the_package_and_configs_links_there():
    path = Path(model_zoo.get_config_file("BlendMask/R_50_1x.yaml"))
    assert path.is_file() and PACKAGE_CONFIGS.resolve() in path.parents
    assert (REPO_ROOT / "configs").resolve() == PACKAGE_CONFIGS.resolve()
    assert model_zoo.get_config_file("configs/SOLOv2/R50_3x.yaml") == model_zoo.get_config_file("SOLOv2/R50_3x.yaml")


def test_unknown_or_escaping_config_names_are_refused_clearly():
    with pytest.raises(FileNotFoundError, match=r"Did you mean 'BlendMask/R_50_1x.yaml'"):
        model_zoo.get_config_file("BlendMask/R50_1x.yaml")
    with pytest.raises(FileNotFoundError, match="not a config"):
        model_zoo.get_config_file("../../../setup.py")


def test_catalog_covers_every_released_reference_config():
    names = set(model_zoo.list_configs())
    assert set(CATALOG) <= names, set(CATALOG) - names
    reference = {n for n in names if n.endswith(".yaml") and n.split("/")[0] in
                 ("BlendMask", "CenterMask", "SOLOv2", "AggMask", "FCOS-Detection")}
    assert reference - set(CATALOG) == set()
    for name, entry in CATALOG.items():
        assert entry.licence and entry.source.startswith("https://github.com/"), name
        assert entry.url or entry.note, f"{name}: a config without a checkpoint says why"
        assert entry.url is None or (entry.url.startswith("https://") and "cloudstor" not in entry.url), name
        assert entry.url is None or "/blob/" not in entry.url, f"{name}: a Hugging Face page, not the file"


def test_checkpoint_urls_and_trained_configs():
    url = model_zoo.get_checkpoint_url("BlendMask/R_50_1x.yaml")
    assert url == "https://huggingface.co/ZjuCv/AdelaiDet/resolve/main/R_50_1x.pth"
    cfg = model_zoo.get_config("CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml", trained=True)
    assert cfg.MODEL.WEIGHTS.endswith("centermask2-lite-V-19-eSE-FPN-ms-4x.pth")
    assert model_zoo.get_config("CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml").MODEL.WEIGHTS != cfg.MODEL.WEIGHTS
    lazy = model_zoo.get_config("Lazy/SOLOv2_R50_3x.py", trained=True)
    assert lazy.train.init_checkpoint == model_zoo.get_checkpoint_url("SOLOv2/R50_3x.yaml")
    with pytest.raises(KeyError, match="instance model's file"):
        model_zoo.get_checkpoint_url("BlendMask/Panoptic/R_50_3x.yaml")
    with pytest.raises(KeyError, match="shapes dataset"):
        model_zoo.get_checkpoint_url("Shapes/BlendMask_R18.yaml")


class _Server:
    """A static file server on 127.0.0.1 counting the GET requests it answers."""

    def __init__(self, folder):
        self.requests = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):  # noqa: N802 (http.server's name)
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def zoo(tmp_path, monkeypatch):
    """A model zoo holding one tiny config whose checkpoint a local HTTP server serves."""
    from blendmask.engine import build_model_and_load

    configs = tmp_path / "configs"
    (configs / "Tiny").mkdir(parents=True)
    cfg = tiny_cfg()
    (configs / "Tiny" / "BlendMask_tiny.yaml").write_text(cfg.dump())
    torch.manual_seed(3)
    model = build_model_and_load(cfg)
    served = tmp_path / "served"
    served.mkdir()
    weights = served / "tiny_blendmask.pth"
    torch.save({"model": model.state_dict(), "thing_classes": ["a", "b", "c", "d", "e"]}, weights)
    server = _Server(served)
    monkeypatch.setattr(model_zoo, "CONFIG_DIR", configs)
    monkeypatch.setenv("BLENDMASK_CACHE", str(tmp_path / "cache"))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    entry = model_zoo.Entry("BlendMask", "R-50 (narrow)", "-", "https://github.com/example", "test",
                            url=f"{server.url}/tiny_blendmask.pth", sha256=sha)
    monkeypatch.setitem(CATALOG, "Tiny/BlendMask_tiny.yaml", entry)
    yield model, entry, server, tmp_path
    server.close()


def test_download_caches_checks_and_loads_weights(zoo):
    model, entry, server, tmp_path = zoo
    loaded = model_zoo.get("Tiny/BlendMask_tiny.yaml", trained=True)
    assert loaded.thing_classes == ["a", "b", "c", "d", "e"] and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    cached = list((tmp_path / "cache").rglob("tiny_blendmask.pth"))
    assert len(cached) == 1 and server.requests == ["/tiny_blendmask.pth"]
    model_zoo.get("Tiny/BlendMask_tiny.yaml", trained=True)  # second time: from the cache
    assert server.requests == ["/tiny_blendmask.pth"]


def test_a_checksum_mismatch_is_an_error_and_the_bad_copy_is_deleted(zoo, monkeypatch):
    model, entry, server, tmp_path = zoo
    monkeypatch.setitem(CATALOG, "Tiny/BlendMask_tiny.yaml",
                        model_zoo.Entry(**{**entry.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ChecksumError, match="expected 0000"):
        model_zoo.get("Tiny/BlendMask_tiny.yaml", trained=True)
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("tiny_blendmask.pth"))
    # once the record is right, the file downloads again and loads
    monkeypatch.setitem(CATALOG, "Tiny/BlendMask_tiny.yaml", entry)
    model_zoo.get("Tiny/BlendMask_tiny.yaml", trained=True)
    assert server.requests == ["/tiny_blendmask.pth"] * 2


def test_an_unreachable_url_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDMASK_CACHE", str(tmp_path))
    server = _Server(tmp_path)
    url = f"{server.url}/missing.pth"
    server.close()
    with pytest.raises(OSError, match="could not download .*missing.pth"):
        model_zoo.download(url)
    assert not os.listdir(tmp_path) or not list(tmp_path.rglob("missing.pth"))
