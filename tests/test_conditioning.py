"""The image-conditioning mask: sampling feeds the mask an adapter was trained with."""

import pytest
import torch

from motionkit import MotionAdapter, MotionkitError
from motionkit.pipeline.conditioning import image_cond, mask_values


def test_one_hot_and_pia_masks():
    assert mask_values(4, "one_hot") == [1.0, 0.0, 0.0, 0.0]
    assert mask_values(4, "one_hot", cond_frame=2) == [0.0, 0.0, 1.0, 0.0]
    pia = mask_values(4, "pia", motion_scale=0)
    assert pia[0] == 1.0 and all(0 < v < 1 for v in pia[1:])
    cond = image_cond(torch.ones(2, 4, 3, 3), 4, mask="one_hot")
    assert cond.shape == (2, 5, 4, 3, 3)
    assert torch.equal(cond[:, 0, :, 0, 0], torch.tensor([[1.0, 0, 0, 0]] * 2))
    assert torch.equal(cond[:, 1:], torch.ones(2, 4, 4, 3, 3))


def test_adapter_records_its_mask_and_refuses_unknown_ones(tmp_path):
    adapter = MotionAdapter(block_out_channels=(32,), norm_num_groups=8, image_cond_channels=5, image_cond_mask="one_hot")
    adapter.save_pretrained(tmp_path / "a")
    assert MotionAdapter.from_pretrained(tmp_path / "a").config.image_cond_mask == "one_hot"
    with pytest.raises(MotionkitError, match="image_cond_mask"):
        MotionAdapter(block_out_channels=(32,), norm_num_groups=8, image_cond_mask="gaussian")
