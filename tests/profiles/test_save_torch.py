"""A full disk reads as the file and the cause, not as torch's zip writer's position check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from profiles.paths import save_torch

FULL = Path("/dev/full")  # Linux: every write fails with ENOSPC


@pytest.mark.skipif(not FULL.exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_names_the_file_and_no_space_left() -> None:
    with pytest.raises(OSError) as caught:
        save_torch({"w": torch.zeros(1000)}, FULL)
    assert "No space left on device" in str(caught.value)
    assert str(FULL) in str(caught.value)
    assert "inline_container" not in str(caught.value)


def test_what_save_torch_writes_loads_back(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_torch(state, tmp_path / "w.pt")
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], state["w"])
