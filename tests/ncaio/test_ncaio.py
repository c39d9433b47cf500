"""ncaio: atomic writes survive a failing write (ENOSPC), verified entries catch damage."""

from __future__ import annotations

import errno
import json
import os

import pytest

import ncaio
from ncaio import CorruptCacheError


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_keeps_old_file_and_leaves_no_temp_on_enospc(tmp_path, monkeypatch):
    target = tmp_path / "entry.json"
    ncaio.atomic_write_json(target, {"v": 1})
    monkeypatch.setattr(os, "fsync", _enospc)  # the disk fills while the data is flushed
    with pytest.raises(OSError) as info:
        ncaio.atomic_write_json(target, {"v": 2})
    assert info.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.json"]


def test_atomic_write_of_a_new_file_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "ckpt.pt"

    def half_then_full(f):
        f.write(b"x" * 100)
        _enospc()

    with pytest.raises(OSError):
        ncaio.save_verified(target, half_then_full)
    assert list((tmp_path / "sub").iterdir()) == []


def test_verified_json_round_trip_and_damage(tmp_path):
    path = tmp_path / "baseline.json"
    ncaio.write_verified_json(path, {"curve": [3.0, 2.5], "final_loss": 2.5})
    assert ncaio.read_verified_json(path) == {"curve": [3.0, 2.5], "final_loss": 2.5}
    good = path.read_text()
    path.write_text(good.replace("2.5", "2.4", 1))  # still valid JSON, different number
    with pytest.raises(CorruptCacheError, match="sha256"):
        ncaio.read_verified_json(path)
    path.write_text(good[: len(good) // 2])  # torn
    with pytest.raises(CorruptCacheError, match="not JSON"):
        ncaio.read_verified_json(path)
    path.write_text(json.dumps({"final_loss": 2.5}))  # an entry from before verification
    with pytest.raises(CorruptCacheError, match="no recorded sha256"):
        ncaio.read_verified_json(path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-sidecar"])
def test_verify_file_detects_damage(tmp_path, damage):
    path = tmp_path / "model.pt"
    ncaio.save_verified(path, lambda f: f.write(bytes(range(256)) * 10))
    ncaio.verify_file(path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[1234] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[:-1]))
    else:
        ncaio.sidecar_path(path).unlink()
    with pytest.raises(CorruptCacheError):
        ncaio.verify_file(path)


def test_quarantine_keeps_the_entry_and_its_sidecar(tmp_path):
    path = tmp_path / "model.pt"
    ncaio.save_verified(path, lambda f: f.write(b"weights"))
    moved = ncaio.quarantine(path)
    again = tmp_path / "model.pt"
    ncaio.save_verified(again, lambda f: f.write(b"other"))
    moved_again = ncaio.quarantine(again)
    assert not path.exists() and moved.parent == tmp_path / ".corrupt"
    assert moved.read_bytes() == b"weights" and moved_again.read_bytes() == b"other"
    assert ncaio.sidecar_path(moved).is_file() and moved != moved_again


def test_report_corrupt_says_one_line(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text("{")
    with pytest.raises(CorruptCacheError) as info:
        ncaio.read_verified_json(path)
    dest = ncaio.report_corrupt(info.value, "baseline")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.json" in err and str(dest) in err
    assert dest.read_text() == "{"


def test_failed_rewrite_keeps_the_old_verified_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    ncaio.save_verified(path, lambda f: f.write(b"old"))
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError):
        ncaio.save_verified(path, lambda f: f.write(b"new"))
    monkeypatch.undo()
    ncaio.verify_file(path)
    assert path.read_bytes() == b"old"
