import numpy as np
import pytest
from PIL import Image

from msf import celebamask
from msf.augment import Augment, hflip
from msf.data import list_samples, read_pair, split_names, split_samples
from msf.errors import MsfError
from msf.labels import LABELS, palette_bytes


def test_flip_swaps_left_and_right_labels():
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[:, 0] = 4   # l_eye on the image's left column
    mask[:, 1] = 7   # r_brow
    mask[:, 2] = 8   # l_ear
    mask[:, 5] = 13  # hair (no partner)
    img = np.zeros((4, 6, 3), dtype=np.uint8)
    img[:, 0] = 255
    fimg, fmask = hflip(img, mask)
    assert (fmask[:, 5] == 5).all() and (fmask[:, 4] == 6).all() and (fmask[:, 3] == 9).all()
    assert (fmask[:, 0] == 13).all()
    assert (fimg[:, 5] == 255).all()


def test_augment_flip_only_equals_hflip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    mask = rng.integers(0, 19, (16, 16), dtype=np.uint8)
    aug = Augment(flip=1.0, rotate=0.0, scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0)
    a_img, a_mask = aug(img, mask)
    e_img, e_mask = hflip(img, mask)
    assert np.array_equal(a_mask, e_mask)
    assert np.abs(a_img.astype(int) - e_img.astype(int)).max() <= 1


def test_augment_keeps_masks_as_class_ids(faces_root):
    img, mask = read_pair(list_samples(faces_root)[0])
    a_img, a_mask = Augment()(img, mask)
    assert a_img.shape == img.shape and a_mask.dtype == np.uint8
    assert set(np.unique(a_mask)) <= set(np.unique(mask))  # nearest-neighbour: no new ids


def test_real_pairs_read(faces_root):
    samples = list_samples(faces_root)
    assert len(samples) == 900
    img, mask = read_pair(samples[0])
    assert img.shape == (512, 512, 3) and mask.shape == (512, 512)
    assert mask.max() < len(LABELS) and len(np.unique(mask)) > 3


def test_split_is_deterministic_and_disjoint():
    names = [f"n{i:03d}" for i in range(50)]
    tr, va = split_names(names, 10, seed=42)
    assert (tr, va) == split_names(list(reversed(names)), 10, seed=42)
    assert len(va) == 10 and not set(tr) & set(va) and len(tr) + len(va) == 50
    assert va != split_names(names, 10, seed=7)[1]


def _write_pair(root, name, img_size=(8, 8), mask_size=(8, 8)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", img_size).save(root / "images" / f"{name}.jpg")
    m = Image.new("L", mask_size)
    m.putpalette(palette_bytes())
    m.save(root / "masks" / f"{name}.png")


def test_bad_files_are_named(tmp_path):
    _write_pair(tmp_path, "ok")
    _write_pair(tmp_path, "mismatch", mask_size=(4, 4))
    (tmp_path / "images" / "corrupt.jpg").write_bytes(b"not a jpeg")
    _write_pair(tmp_path, "corruptmask")
    (tmp_path / "masks" / "corruptmask.png").write_bytes(b"nope")
    by_name = {s.name: s for s in list_samples(tmp_path, require_masks=False)}
    with pytest.raises(MsfError, match="size mismatch for mismatch"):
        read_pair(by_name["mismatch"])
    with pytest.raises(MsfError, match="cannot decode image: .*corrupt.jpg"):
        read_pair(by_name["corrupt"])
    with pytest.raises(MsfError, match="cannot decode mask .*corruptmask.png"):
        read_pair(by_name["corruptmask"])
    (tmp_path / "images" / "nomask.jpg").write_bytes(b"")
    with pytest.raises(MsfError, match=r"mask missing for (corrupt|nomask)\.jpg"):
        list_samples(tmp_path)


def test_rgb_mask_is_rejected(tmp_path):
    _write_pair(tmp_path, "a")
    Image.new("RGB", (8, 8)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(MsfError, match="mode RGB"):
        read_pair(list_samples(tmp_path)[0])


def test_official_layout_merges_parts_and_splits_by_identity(tmp_path):
    (tmp_path / celebamask.IMG_DIR).mkdir()
    for i in range(3):
        Image.new("RGB", (1024, 1024), (i * 50, 0, 0)).save(tmp_path / celebamask.IMG_DIR / f"{i}.jpg")
    anno = tmp_path / celebamask.ANNO_DIR / "0"
    anno.mkdir(parents=True)

    def part(idx, name, box):
        a = np.zeros((512, 512), dtype=np.uint8)
        y0, y1, x0, x1 = box
        a[y0:y1, x0:x1] = 255
        Image.fromarray(a).save(anno / f"{idx:05d}_{name}.png")

    part(0, "skin", (100, 400, 100, 400))
    part(0, "nose", (200, 300, 200, 300))   # over skin: the later id (2) wins
    part(0, "hair", (0, 150, 0, 512))       # id 13 over skin's top rows
    (tmp_path / celebamask.MAPPING).write_text(
        "idx orig_idx orig_file\n0 100 000101.jpg\n1 170000 170001.jpg\n2 190000 190001.jpg\n")
    samples = list_samples(tmp_path)
    assert [s.name for s in samples] == ["0", "1", "2"]
    img, mask = read_pair(samples[0])
    assert img.shape == (512, 512, 3) and mask.shape == (512, 512)
    assert mask[250, 250] == 2 and mask[350, 350] == 1 and mask[120, 200] == 13 and mask[450, 450] == 0
    assert not read_pair(samples[1])[1].any()  # no part files: all background
    train, val = split_samples(samples, val_count=0, seed=0)
    assert train == ["0"] and val == ["1"]
    assert celebamask.read_split(tmp_path)["test"] == [2]
