"""The video adapter: readers (arrays of every layout, .npy, a real MP4 written with PyAV),
bad input, clip sampling, clip-consistent augmentation, tokens and encoders (pretraining:
test_video_pretrain.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from multissl.adapters import get_adapter, list_adapters
from multissl.adapters.video import VideoAdapter
from multissl.errors import ConfigError, DataError

import av  # a base dependency (the video adapter decodes with PyAV)


def write_mp4(path, frames, fps=10):
    """Encode uint8 RGB frames (T, H, W, 3) as an MPEG-4 Part 2 MP4 with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_bar(T=12, size=32):
    """A white vertical bar moving right by 2 px per frame on a dark background."""
    frames = np.full((T, size, size, 3), 20, np.uint8)
    for t in range(T):
        frames[t, :, 2 * t:2 * t + 8] = 230
    return frames


def clips_nthwc(n=6, t=8, size=16, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, t, size, size, c), dtype=np.uint8)


def test_registered():
    assert "video" in list_adapters()
    assert isinstance(get_adapter("video"), VideoAdapter)


def test_array_layouts_give_the_same_frames():
    x = clips_nthwc()
    a = VideoAdapter().prepare(x)
    b = VideoAdapter().prepare(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
    c = VideoAdapter().prepare(torch.from_numpy(x))
    assert a["video"].shape == (6, 8, 3, 16, 16) and a["video"].dtype == torch.uint8
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["video"], c["video"])
    assert torch.equal(a["video"][2, 3], torch.from_numpy(x[2, 3]).permute(2, 0, 1))
    assert a["length"].tolist() == [8] * 6
    gray = VideoAdapter().prepare(x[..., 0])
    assert gray["video"].shape == (6, 8, 1, 16, 16) and torch.equal(gray["video"][:, :, 0], torch.from_numpy(x[..., 0]))


def test_ambiguous_layout_needs_the_layout_option():
    x = np.zeros((2, 4, 3, 8, 3), np.uint8)
    with pytest.raises(DataError, match="ambiguous layout"):
        VideoAdapter().prepare(x)
    assert VideoAdapter(layout="NTCHW").prepare(x)["video"].shape == (2, 4, 3, 8, 3)


def test_npy_file(tmp_path):
    x = clips_nthwc(n=3)
    np.save(tmp_path / "clips.npy", x)
    out = VideoAdapter().prepare(str(tmp_path / "clips.npy"))
    assert torch.equal(out["video"], torch.from_numpy(x).permute(0, 1, 4, 2, 3))


def test_real_mp4_is_decoded(tmp_path):
    frames = moving_bar()
    write_mp4(tmp_path / "bar.mp4", frames)
    out = VideoAdapter().prepare(str(tmp_path / "bar.mp4"))
    v = out["video"][0].permute(0, 2, 3, 1).numpy().astype(int)
    assert out["video"].shape == (1, 12, 3, 32, 32) and out["length"].tolist() == [12]
    assert np.abs(v - frames).mean() < 4  # lossy codec: close, not exact
    # the bar is where it was drawn in every frame (the codec kept the motion)
    for t in range(12):
        cols = np.nonzero(v[t].mean(axis=(0, 2)) > 128)[0]
        assert abs(cols.min() - 2 * t) <= 1 and abs(cols.max() - (2 * t + 7)) <= 1, t


def test_folder_of_videos_of_different_lengths_and_sizes(tmp_path):
    write_mp4(tmp_path / "a.mp4", moving_bar(T=12, size=32))
    write_mp4(tmp_path / "b.mp4", moving_bar(T=6, size=48))
    ad = VideoAdapter()
    out = ad.prepare(str(tmp_path))
    assert out["video"].shape == (2, 12, 3, 32, 32) and out["length"].tolist() == [12, 6]
    assert ad.config["clip_length"] == 6 and ad.config["frame_size"] == [32, 32]
    assert out["video"][1, 6:].abs().sum() == 0  # padding after the real frames


@pytest.mark.parametrize("cut", ["half", "tail", "garbage"])
def test_corrupt_or_truncated_file_names_the_file(tmp_path, cut):
    write_mp4(tmp_path / "ok.mp4", moving_bar())
    data = (tmp_path / "ok.mp4").read_bytes()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes({"half": data[: len(data) // 2], "tail": data[:-150], "garbage": b"not a video" * 50}[cut])
    with pytest.raises(DataError, match="broken.mp4"):
        VideoAdapter().prepare(str(bad))


def test_bad_arrays_raise_data_error():
    with pytest.raises(DataError, match="uint8"):
        VideoAdapter().prepare(np.zeros((2, 4, 8, 8, 3), np.float32))
    with pytest.raises(DataError, match="3 dimensions"):
        VideoAdapter().prepare(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match="zero frames"):
        VideoAdapter().prepare(np.zeros((2, 0, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="missing.mp4"):
        VideoAdapter().prepare("missing.mp4")
    ad = VideoAdapter()
    ad.prepare(clips_nthwc(c=3))
    with pytest.raises(DataError, match="1 channel"):
        ad.prepare(clips_nthwc(c=1))
    with pytest.raises(ConfigError, match="unknown video adapter option"):
        VideoAdapter(clip_len=4)


def test_clip_sampling_length_stride_and_jitter():
    video = torch.arange(20, dtype=torch.uint8).view(1, 20, 1, 1, 1).expand(4, 20, 1, 4, 4).contiguous()
    data = {"video": video, "length": torch.tensor([20, 20, 20, 5])}
    ad = VideoAdapter(clip_length=4, frame_stride=3, preset="none", mean=[0.0], std=[1 / 255])
    ev = ad.eval_transform(data)[:, 0, :, 0, 0].round().long()
    assert ev[0].tolist() == [5, 8, 11, 14]          # centred: a span of 10 frames in 20 starts at (20 - 10) // 2
    assert ev[3].tolist() == [0, 3, 4, 4]            # a short video holds its last frame
    g = torch.Generator().manual_seed(0)
    starts = {int(ad.views(data, 1, generator=g)[0][0, 0, 0, 0, 0].round()) for _ in range(30)}
    assert len(starts) > 3 and min(starts) >= 0 and max(starts) <= 10   # temporal jitter within the video


def test_augmentation_is_the_same_for_every_frame_of_a_clip():
    frame = np.random.default_rng(1).integers(0, 256, (1, 1, 16, 16, 3), dtype=np.uint8)
    still = np.repeat(np.repeat(frame, 8, axis=1), 6, axis=0)  # 6 clips of one repeated frame
    ad = VideoAdapter(cj_prob=1.0, gray_prob=0.5)
    data = ad.prepare(still)
    ad.fit(data)
    for view in ad.views(data, n_views=2, generator=torch.Generator().manual_seed(0)):
        assert view.shape == (6, 3, 8, 16, 16)
        assert torch.allclose(view, view[:, :, :1].expand_as(view), atol=1e-5)   # frames still identical
        assert not torch.allclose(view[0], view[1], atol=1e-3)                   # but clips differ


def test_seed_reproduces_views():
    ad = VideoAdapter(clip_length=5)
    data = ad.prepare(clips_nthwc())
    a = ad.views(data, generator=torch.Generator().manual_seed(3))
    b = ad.views(data, generator=torch.Generator().manual_seed(3))
    c = ad.views(data, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_tokens_use_tube_masking_groups():
    ad = VideoAdapter(clip_length=4, tubelet=2, patch_size=4)
    data = ad.prepare(clips_nthwc(size=8))
    tb = ad.tokens(data, generator=torch.Generator().manual_seed(0))
    assert tb.targets.shape == (6, 2 * 2 * 2, 2 * 4 * 4 * 3)
    assert tb.mask_groups[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]   # same spatial position = same tube


@pytest.mark.parametrize("name", ["c3d_small", "r3d_18", "video_vit_tiny"])
def test_encoders_give_embeddings_and_gradients(name):
    ad = VideoAdapter(clip_length=4, patch_size=8)
    data = ad.prepare(clips_nthwc(n=2, size=16, c=1))
    enc = ad.build_encoder(name)
    h = enc(ad.eval_transform(data))
    assert h.shape == (2, enc.embed_dim)
    h.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_cli_reports_a_truncated_video_in_one_line(tmp_path):
    write_mp4(tmp_path / "ok.mp4", moving_bar())
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "broken.mp4").write_bytes((tmp_path / "ok.mp4").read_bytes()[:300])
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "multissl.cli", "pretrain", "--adapter", "video", "--data",
                        str(tmp_path / "clips"), "--epochs", "1", "--output", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 2, r.stderr
    assert "broken.mp4" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_list_of_arrays_of_different_lengths():
    a, b = clips_nthwc(n=1, t=8)[0], clips_nthwc(n=1, t=5, seed=1)[0]
    out = VideoAdapter().prepare([a, torch.from_numpy(b)])
    assert out["video"].shape == (2, 8, 3, 16, 16) and out["length"].tolist() == [8, 5]
    assert torch.equal(out["video"][1, :5], torch.from_numpy(b).permute(0, 3, 1, 2))
    with pytest.raises(DataError, match="record 1: the video has zero frames"):
        VideoAdapter().prepare([a, b[:0]])
    with pytest.raises(DataError, match="record 0: expected uint8"):
        VideoAdapter().prepare([a.astype(np.int64)])
