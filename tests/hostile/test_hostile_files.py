"""Hostile files and environments (issue 18 item 5): a safetensors index pointing outside its folder, the
native-kernel cache key, stale temporary folders beside an artifact."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from zerollm import kernels
from zerollm.artifacts import atomic_dir, remove_stale_tmp, write_manifest
from zerollm.interop.weights import InteropError, SafetensorsSource


@pytest.mark.parametrize("shard", ["../secret.safetensors", "/etc/passwd", "sub/../../secret.safetensors",
                                   "link.safetensors", 7])
def test_hf_index_shards_are_confined_to_the_model_folder(tmp_path, shard):
    model = tmp_path / "model"
    model.mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "secret.safetensors"))  # outside the model folder
    (model / "link.safetensors").symlink_to(tmp_path / "secret.safetensors")
    index = model / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": shard}}))
    with pytest.raises(InteropError, match="inside|outside"):
        SafetensorsSource.from_index(index)


def test_hf_index_inside_the_folder_still_loads(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "model-00001.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "model-00001.safetensors"}}))
    assert "w" in SafetensorsSource.from_index(index).files


def test_kernel_cache_key_names_the_torch_build(monkeypatch):
    before = kernels._build_dir()
    monkeypatch.setattr(torch.version, "git_version", "another-build")  # same torch.__version__, other build
    assert kernels._build_dir() != before


def test_stale_temporary_folders_go_when_the_same_output_is_written_again(tmp_path):
    out = tmp_path / "idx"
    stale = tmp_path / ".idx.abcd1234.tmp"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"x" * 1000)
    other = tmp_path / ".notes.abcd1234.tmp"  # another artifact's leftover: not ours to remove now
    other.mkdir()
    mine = tmp_path / "idx.tmp"  # a user's file that merely looks similar
    mine.write_text("keep")
    with atomic_dir(out, "thing") as tmp:
        write_manifest(tmp, "thing")
    assert not stale.exists() and other.exists() and mine.read_text() == "keep"
    assert out.is_dir()
    assert remove_stale_tmp(tmp_path, "notes") == [other] and not other.exists()
