"""Model parts: the vision encoder's shapes and keypoints, the U-Net's conditioning, the EMA decay, imports."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from policies.config import PolicyConfig
from policies.ema import EMA, ema_decay
from policies.model import DiffusionModel, resolve_device
from policies.unet import ConditionalUnet1D
from policies.vision import ImageEncoder, ResNet18Trunk, SpatialSoftmax


def test_resnet18_trunk_has_18_layers_and_downsamples_by_32():
    trunk = ResNet18Trunk(width=8)
    features = trunk(torch.zeros(2, 3, 84, 84))
    assert features.shape == (2, 64, 3, 3)
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(convs) == 17  # + the classifier layer it replaces = 18
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trunk.modules())
    assert ImageEncoder(8, 4, 16)(torch.zeros(5, 3, 28, 28, dtype=torch.uint8)).shape == (5, 16)


def test_spatial_softmax_finds_the_peak_of_each_map():
    pool = SpatialSoftmax(in_channels=2, keypoints=2)
    with torch.no_grad():
        pool.keypoint_conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        pool.keypoint_conv.bias.zero_()
    maps = torch.zeros(1, 2, 5, 9)
    maps[0, 0, 0, 8] = 50.0  # top right
    maps[0, 1, 4, 0] = 50.0  # bottom left
    torch.testing.assert_close(pool(maps), torch.tensor([[1.0, -1.0, -1.0, 1.0]]), atol=1e-3, rtol=0)


def test_unet_keeps_the_chunk_shape_and_depends_on_step_and_observation():
    torch.manual_seed(0)
    unet = ConditionalUnet1D(input_dim=2, global_cond_dim=6, down_dims=(16, 32, 64), step_embed_dim=16)
    x, cond = torch.randn(3, 16, 2), torch.randn(3, 6)
    out = unet(x, torch.tensor([1, 1, 1]), cond)
    assert out.shape == (3, 16, 2)
    assert not torch.allclose(out, unet(x, torch.tensor([50, 50, 50]), cond))
    assert not torch.allclose(out, unet(x, torch.tensor([1, 1, 1]), cond + 1))


def test_default_preset_has_the_published_sizes():
    model = DiffusionModel(PolicyConfig(), {"overhead": (96, 96), "wrist": (96, 96)}, action_dim=2)
    assert model.crops == {"overhead": (84, 84), "wrist": (84, 84)}
    assert [b[0].block1[0].out_channels for b in model.unet.down] == [256, 512, 1024]
    assert model.unet.down[0][0].block1[0].kernel_size == (5,)
    assert model.unet.down[0][0].block1[1].num_groups == 8
    resnet = sum(p.numel() for p in model.encoders["overhead"].trunk.parameters())
    assert 11.0e6 < resnet < 11.3e6  # ResNet-18 less its classifier: 11.17M


def test_ema_decay_warms_up_and_is_capped():
    assert ema_decay(1) == 0.0
    decays = [ema_decay(s) for s in (2, 10, 100, 10_000)]
    assert decays == sorted(decays) and decays[0] == pytest.approx(1 - 2**-0.75)
    assert ema_decay(10**9) == 0.9999
    model = torch.nn.Linear(2, 2)
    ema = EMA(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=1)  # decay 0: a copy
    torch.testing.assert_close(ema.model.weight, model.weight)


def test_policies_never_import_drake():
    code = (
        "import sys, data_gen, policies.train, policies.classify, policies.policy;"
        "from policies import *;"  # every public name of the package, loaded
        "from data_gen import EpisodeStore, EpisodeMeta, StoreError;"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('pydrake', 'pushing_sim') or m == 'data_gen.gcs'];"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_cos_sin_state_angle_is_continuous_across_the_wrap():
    model = DiffusionModel(PolicyConfig(preset="tiny", obs_mode="state", state_angle="cos_sin"), {}, 2)
    raw = DiffusionModel(PolicyConfig(preset="tiny", obs_mode="state"), {}, 2)
    for m in (model, raw):
        m.normalizer.fit({"action": np.zeros((2, 2)) + [[0], [1]], "state": np.array([[0, 0, 0, 0, -np.pi], [1, 1, 1, 1, np.pi]])})
    just_below, just_above = ({"state": torch.tensor([[[0.5, 0.5, 0.5, 0.5, a]] * 2])} for a in (np.pi - 1e-4, -np.pi + 1e-4))
    assert model.encode_obs(just_below).shape == (1, 2 * 6)
    torch.testing.assert_close(model.encode_obs(just_below), model.encode_obs(just_above), atol=1e-3, rtol=0)
    assert (raw.encode_obs(just_below) - raw.encode_obs(just_above)).abs().max() > 1.9  # the raw angle jumps


def test_a_device_torch_does_not_know_or_cannot_see_is_a_value_error():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="'cuda:99' requested but torch sees"):
        resolve_device("cuda:99")
