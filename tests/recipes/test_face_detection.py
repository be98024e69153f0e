"""face_detection recipe: scene compositing, determinism, identification, end to end, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from multissl.errors import DataError
from multissl.evaluation.detection_ap import box_iou_matrix
from multissl.recipes import face_detection as fd
from multissl.recipes._face_scenes import compose_scenes, load_backgrounds, load_orl_faces, random_crops

FACE_W, FACE_H = 23, 28  # the ORL aspect (92 x 112) at a quarter of the size


def _face(person: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A face-like greyscale image: a bright ellipse with dark 'eyes' whose spacing depends on the person."""
    yy, xx = np.mgrid[0:FACE_H, 0:FACE_W]
    img = 40 + 150 * (((xx - FACE_W / 2) / 10) ** 2 + ((yy - FACE_H / 2) / 13) ** 2 < 1)
    gap = 3 + person % 4
    for ex in (FACE_W // 2 - gap, FACE_W // 2 + gap):
        img[9:12, max(0, ex - 1):ex + 1] = 20
    img = img + rng.normal(0, 6 + k, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def orl_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("orl")
    rng = np.random.default_rng(0)
    for person in range(1, 6):
        (root / f"s{person}").mkdir()
        for k in range(1, 4):
            Image.fromarray(_face(person, k, rng)).save(root / f"s{person}" / f"{k}.pgm")
    (root / "README").write_text("fixture")
    return root


@pytest.fixture(scope="module")
def background_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bg")
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_orl_reader_sorts_by_person_and_image_number(orl_folder, tmp_path):
    faces = load_orl_faces(str(orl_folder))
    assert faces.images.shape == (15, FACE_H, FACE_W) and faces.images.dtype == np.uint8
    assert faces.people.tolist() == [p for p in range(1, 6) for _ in range(3)]
    assert faces.files[3].endswith("s2/1.pgm")
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "1.pgm").write_bytes(b"P5\n92 112\n255\n" + b"\x00" * 10)  # truncated pixels
    with pytest.raises(DataError, match=r"s1/1\.pgm"):
        load_orl_faces(str(tmp_path))


def test_scene_boxes_match_the_pasted_faces(orl_folder):
    faces = load_orl_faces(str(orl_folder))
    grey = np.full((2, 16, 16), 77, dtype=np.uint8)
    scenes = compose_scenes(faces, [1, 2, 3], 6, seed=3, size=64, backgrounds=grey, natural_prob=1.0,
                            texture_mix=(0.0, 0.0), face_height=(12, 30), max_iou=0.0, brightness=0.0,
                            contrast=(1.0, 1.0), feather=(0.0, 0.0), noise_std=0.0)
    assert scenes.images.shape == (6, 1, 64, 64)
    for img, boxes, idx, people in zip(scenes.images[:, 0], scenes.boxes, scenes.face_index, scenes.people):
        assert len(boxes) >= 1
        outside = np.ones_like(img, dtype=bool)
        for (x1, y1, x2, y2), k in zip(boxes.astype(int), idx):
            expected = np.asarray(Image.fromarray(faces.images[k]).resize((x2 - x1, y2 - y1), Image.BILINEAR))
            np.testing.assert_array_equal(img[y1:y2, x1:x2], expected)
            outside[y1:y2, x1:x2] = False
            assert abs((x2 - x1) / (y2 - y1) - 92 / 112) < 0.05  # the ORL aspect is kept
        assert (img[outside] == 77).all()  # nothing but background outside the boxes
        assert set(people.tolist()) <= {1, 2, 3}


def test_scenes_keep_boxes_inside_and_apart(orl_folder, background_folder):
    faces = load_orl_faces(str(orl_folder))
    scenes = compose_scenes(faces, [1, 2, 3, 4], 20, seed=0, size=96, backgrounds=load_backgrounds(str(background_folder)),
                            face_height=(18, 42), max_iou=0.05)
    counts = [len(b) for b in scenes.boxes]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1
    for b in scenes.boxes:
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 96).all()
        assert (b[:, 3] - b[:, 1] >= 18).all() and (b[:, 3] - b[:, 1] <= 42).all()
        iou = box_iou_matrix(b, b)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.05


def test_scenes_are_deterministic_given_the_seed(orl_folder, background_folder):
    faces = load_orl_faces(str(orl_folder))
    bg = load_backgrounds(str(background_folder))
    a = compose_scenes(faces, [1, 2], 5, seed=11, size=64, backgrounds=bg, face_height=(12, 28))
    b = compose_scenes(faces, [1, 2], 5, seed=11, size=64, backgrounds=bg, face_height=(12, 28))
    c = compose_scenes(faces, [1, 2], 5, seed=12, size=64, backgrounds=bg, face_height=(12, 28))
    np.testing.assert_array_equal(a.images, b.images)
    assert all((x == y).all() for x, y in zip(a.boxes, b.boxes))
    assert not np.array_equal(a.images, c.images)
    crops = random_crops(a.images, 32, 3, seed=0)
    assert crops.shape == (15, 1, 32, 32)
    np.testing.assert_array_equal(crops, random_crops(a.images, 32, 3, seed=0))


def test_identification_by_hand():
    # two people, two images each; person 0's images point along x, person 1's along y
    feats = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    people, shot = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    assert fd.identification_accuracy(feats, people, shot)["accuracy"] == 1.0
    # each person's two images look like the other person's other image: every query is wrong
    crossed = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.1]])
    assert fd.identification_accuracy(crossed, people, shot)["accuracy"] == 0.0


def test_both_detectors_start_from_the_same_head(orl_folder):
    import torch

    from multissl.adapters.image_encoders import build_image_encoder

    args = fd.Args(faces="", scene_size=64, fpn_channels=32, head_convs=1)
    torch.manual_seed(5)
    d1 = fd.build_detector(build_image_encoder("resnet18", in_channels=1, width=0.125), 0.5, 0.25, args, seed=1)
    d2 = fd.build_detector(build_image_encoder("resnet18", in_channels=1, width=0.125), 0.5, 0.25, args, seed=1)
    for (n1, p1), (n2, p2) in zip(d1.named_parameters(), d2.named_parameters()):
        if not n1.startswith("backbone.trunk"):
            assert torch.equal(p1, p2), n1
    assert not torch.equal(d1.backbone.trunk.conv1.weight, d2.backbone.trunk.conv1.weight)
    d1.eval()
    out = d1([torch.rand(1, 64, 64)])
    assert set(out[0]) == {"boxes", "scores", "labels"}


TINY = ["--scene-size", "64", "--train-people", "3", "--unlabeled-scenes", "8", "--labelled-scenes", "6",
        "--test-scenes", "4", "--crop-size", "32", "--crops-per-scene", "2", "--encoder-width", "0.125",
        "--ssl-epochs", "1", "--ssl-batch-size", "8", "--fpn-channels", "32", "--head-convs", "1",
        "--det-steps", "3", "--det-batch-size", "2", "--no-progress"]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        fd.parse_args(["--help"])
    assert e.value.code == 0 and "--det-seeds" in capsys.readouterr().out


def test_end_to_end_tiny_run(orl_folder, background_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert fd.main(["--faces", str(orl_folder), "--backgrounds", str(background_folder), "--output", str(out), *TINY,
                    "--det-seeds", "2"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["train_people"]) == 3 and len(m["test_people"]) == 2
    assert not set(m["train_people"]) & set(m["test_people"])
    for name in ("ssl", "scratch"):
        assert 0.0 <= m["detection"][name]["ap50"] <= 1.0
        assert m["detection"][name]["num_faces"] == m["num_faces"]["test"] >= 4
        runs = m["detection"][name]["runs"]
        assert len(runs) == 2 and m["detection"][name]["ap50"] == pytest.approx(np.mean([r["ap50"] for r in runs]))
    assert m["ssl_minus_scratch_ap50"] == pytest.approx(m["detection"]["ssl"]["ap50"] - m["detection"]["scratch"]["ap50"])
    assert len(m["ssl_minus_scratch_ap50_runs"]) == 2
    ident = m["identification"]
    assert set(ident) == {"raw_pixels", "untrained_encoder", "ssl_encoder", "ssl_detector_trunk", "scratch_detector_trunk"}
    assert all(v["rounds"] == 3 and v["chance"] == 0.5 for v in ident.values())
    with Image.open(out / "detections.png") as im:
        assert im.size[0] > 200
    assert (out / "ssl" / "final" / "config.json").exists()
    assert "AP@0.5" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "empty", "too_many_train_people"])
def test_bad_input_exits_2_with_one_line(case, orl_folder, tmp_path, capsys):
    faces = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "too_many_train_people": orl_folder}[case]
    if case == "empty":
        (faces / "s1").mkdir(parents=True)
        (faces / "s1" / "1.jpg").write_bytes(b"not a pgm")
    extra = ["--train-people", "5"] if case == "too_many_train_people" else []
    out = tmp_path / "out"
    assert fd.main(["--faces", str(faces), "--output", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("face_detection: error:") and "\n" not in err and str(faces) in err
    assert not out.exists()  # nothing written
