"""singax.image_tool on tiny generated images: sizes, exact pixels, counts, seeds."""
import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from singax import image_tool as it  # noqa: E402

H, W = 6, 8


def arr(h=H, w=W):
    """(h, w, 3) uint8 with distinct pixels: r = row, g = column, b = 7."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(h)[:, None] * 10
    a[..., 1] = np.arange(w)[None, :] * 10
    a[..., 2] = 7
    return a


def img(h=H, w=W):
    return Image.fromarray(arr(h, w))


def px(im):
    return np.asarray(im)


# ---- functions --------------------------------------------------------------

@pytest.mark.parametrize("position, y, x", [
    ("left_top", 0, 0), ("left_bottom", 2, 0), ("right_top", 0, 5), ("right_bottom", 2, 5),
    ("center", 1, 2), ("middle", 1, 2), ("left", 1, 0), ("right", 1, 5), ("top", 0, 2),
    ("bottom", 2, 2)])
def test_crop_positions_pixels(position, y, x):
    out = it.crop(img(), (3, 4), position)  # patch is (width, height)
    assert out.size == (3, 4)
    np.testing.assert_array_equal(px(out), arr()[y:y + 4, x:x + 3])


def test_crop_accepts_array_and_errors():
    np.testing.assert_array_equal(px(it.crop(arr(), (8, 6), "center")), arr())
    with pytest.raises(ValueError, match=r"crop: patch .*\(9, 2\).*\(8, 6\)"):
        it.crop(img(), (9, 2), "center")
    with pytest.raises(ValueError, match="crop: position.*'corner'"):
        it.crop(img(), (2, 2), "corner")
    with pytest.raises(TypeError, match="crop: expected a PIL image"):
        it.crop([[1]], (1, 1), "center")
    for bad in (np.full((2, 2, 3), 0.5, np.float32), np.full((2, 2, 3), 300, np.int64)):
        with pytest.raises(TypeError, match=f"flip: expected a uint8 .* array, got dtype {bad.dtype}"):
            it.flip(bad)   # a cast would silently give zeros or wrapped values


@pytest.mark.parametrize("position, x", [("left", 0), ("center", 1), ("right", 2)])
def test_crop_and_resize_landscape(position, x):
    out = it.crop_and_resize(img(), (6, 6), position)  # square side 6, no resampling
    assert out.size == (6, 6)
    np.testing.assert_array_equal(px(out), arr()[:, x:x + 6])
    assert it.crop_and_resize(img(), (3, 2), position).size == (3, 2)


@pytest.mark.parametrize("position, y", [("top", 0), ("middle", 1), ("bottom", 2)])
def test_crop_and_resize_portrait(position, y):
    tall = img(8, 6)
    np.testing.assert_array_equal(px(it.crop_and_resize(tall, (6, 6), position)),
                                  arr(8, 6)[y:y + 6])


def test_crop_and_resize_errors():
    with pytest.raises(ValueError, match=r"crop_and_resize: position 'top' needs a portrait.*\(8, 6\)"):
        it.crop_and_resize(img(), (4, 4), "top")
    with pytest.raises(ValueError, match="crop_and_resize: position must be one of"):
        it.crop_and_resize(img(), (4, 4), "left_top")
    with pytest.raises(ValueError, match=r"crop_and_resize: patch .*\(0, 4\)"):
        it.crop_and_resize(img(), (0, 4), "center")


def test_resize_scale_resize_by_hw_sizes():
    assert it.resize(img(), 3).size == (4, 3)          # shorter side (height) -> 3
    assert it.resize(img(8, 6), 3).size == (3, 4)      # shorter side (width) -> 3
    assert it.resize(img(), 4).size == (5, 4)          # 8 * 4 / 6 = 5.33 truncates
    assert it.scale(img(), 0.5).size == (4, 3)
    assert it.scale(img(), 1.5).size == (12, 9)
    assert it.resize_by_hw(img(), (2, 5)).size == (5, 2)  # (h, w) in, PIL's (w, h) out
    # a constant image stays constant through bilinear resizing
    flat = Image.fromarray(np.full((6, 8, 3), 90, np.uint8))
    assert (px(it.resize(flat, 3)) == 90).all()
    with pytest.raises(ValueError, match="resize: small_size .* 0"):
        it.resize(img(), 0)
    with pytest.raises(ValueError, match="scale: ratio .* -1"):
        it.scale(img(), -1)
    with pytest.raises(ValueError, match=r"resize_by_hw: hw \(height, width\).*\(2,\)"):
        it.resize_by_hw(img(), (2,))


def test_flips_pixels():
    np.testing.assert_array_equal(px(it.flip(img())), arr()[:, ::-1])
    np.testing.assert_array_equal(px(it.flip_down(img())), arr()[::-1])


def test_color_cast_offsets_are_per_channel_and_bounded():
    a = np.full((H, W, 3), 128, np.uint8)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(40):
        d = px(it.color_cast(Image.fromarray(a), 20, rng)).astype(int) - 128
        # one offset per channel, the same at every pixel, within [-20, 20]
        assert (d == d[0, 0]).all() and (np.abs(d[0, 0]) <= 20).all()
        seen.update(d[0, 0].tolist())
    assert 0 in seen and len(seen) > 5
    # clipping at both ends
    ends = np.zeros((2, 2, 3), np.uint8)
    ends[1] = 255
    out = px(it.color_cast(Image.fromarray(ends), 255, np.random.default_rng(1)))
    assert out.min() >= 0 and out.max() <= 255
    # grayscale images keep their mode
    assert it.color_cast(Image.fromarray(a[..., 0]), 5, rng).mode == "L"
    with pytest.raises(ValueError, match="color_cast: offset .* 300"):
        it.color_cast(img(), 300)


def test_enhance_factor_range():
    assert (px(it.enhance(img(), 0.0, np.random.default_rng(0))) == arr()).all()
    # brightness alone can only scale by [1 - s, 1 + s]; all four together keep
    # a grey image grey and within those bounds of its level
    grey = Image.fromarray(np.full((H, W, 3), 100, np.uint8))
    vals = {int(px(it.enhance(grey, 0.3, np.random.default_rng(s)))[0, 0, 0]) for s in range(20)}
    assert min(vals) >= 69 and max(vals) <= 131 and len(vals) > 2
    with pytest.raises(ValueError, match="enhance: scale .* -0.1"):
        it.enhance(img(), -0.1)


def test_get_list_sample():
    l = list("abcdef")
    s = it.get_list_sample(l, 3, np.random.default_rng(0))
    assert len(set(s)) == 3 and s == sorted(s)
    assert it.get_list_sample(l, 6) == l
    assert it.get_list_sample(l, 0) == []
    with pytest.raises(ValueError, match=r"get_list_sample: sample_size must be an int in \[0, 6\].* 7"):
        it.get_list_sample(l, 7)


def test_load_img(tmp_path):
    p = tmp_path / "x.png"
    img().save(p)
    np.testing.assert_array_equal(px(it.load_img(str(p))), arr())
    g = it.load_img(str(p), grayscale=True)
    assert g.mode == "L" and g.size == (W, H)
    tool = it.ImageTool().load(str(p))
    assert tool.num_augmentation() == 1 and tool.get()[0].mode == "RGB"


# ---- ImageTool ----------------------------------------------------------------

def tool(n=1, seed=0):
    return it.ImageTool(seed=seed).set([img() for _ in range(n)])


def test_set_append_get():
    t = it.ImageTool().set(img())
    assert t.append(img(8, 6)) is t
    assert [i.size for i in t.get()] == [(W, H), (6, 8)]
    assert t.num_augmentation() == 2


def test_counts_and_chaining():
    t = tool(2).resize_by_list([4, 5, 6], 2).crop5((3, 3), 5).flip(2)
    assert t.num_augmentation() == 2 * 2 * 5 * 2
    assert all(i.size == (3, 3) for i in t.get())
    t = tool(1).crop8((4, 4), 8).enhance(num_case=2).color_cast(num_case=3)
    assert t.num_augmentation() == 8 * 2 * 3
    assert tool().crop3((4, 4), 3).num_augmentation() == 3


def test_inplace_false_returns_list_and_keeps_state():
    t = tool(2)
    before = t.get()
    out = t.crop5((2, 2), 3, inplace=False)
    assert isinstance(out, list) and len(out) == 6 and t.get() is before
    assert len(t.flip(2, inplace=False)) == 4 and t.num_augmentation() == 2


def test_crop5_all_positions_and_per_image_sampling():
    out = tool().crop5((3, 4), 5, inplace=False)
    for o, pos in zip(out, it.CROP_POSITIONS[:5]):
        np.testing.assert_array_equal(px(o), px(it.crop(img(), (3, 4), pos)))
    # each image samples its own position (SINGA reused the first image's)
    t = tool(40).crop5((2, 2), 1)
    assert len({px(o).tobytes() for o in t.get()}) > 1


def test_crop3_and_crop8_contents():
    out = tool().crop3((6, 6), 3, inplace=False)
    for o, x in zip(out, (0, 1, 2)):
        np.testing.assert_array_equal(px(o), arr()[:, x:x + 6])
    tall = it.ImageTool().set(img(8, 6)).crop3((6, 6), 3, inplace=False)
    for o, y in zip(tall, (0, 1, 2)):
        np.testing.assert_array_equal(px(o), arr(8, 6)[y:y + 6])
    eight = tool().crop8((6, 6), 8, inplace=False)
    expect = [it.crop(img(), (6, 6), p) for p in it.CROP_POSITIONS[:5]] + out
    for o, e in zip(eight, expect):
        np.testing.assert_array_equal(px(o), px(e))


def test_resize_scale_rotate_methods():
    sizes = sorted(min(i.size) for i in tool().resize_by_range((3, 6), num_case=3).get())
    assert sizes == [3, 4, 5]
    assert [i.size for i in tool().scale_by_list([0.5, 2.0], 2).get()] == [(4, 3), (16, 12)]
    for i in tool().scale_by_range((0.5, 1.0), num_case=4).get():
        assert 4 <= i.size[0] <= 7 and 3 <= i.size[1] <= 5  # ratio in [0.5, 1)
    hw = [i.size for i in tool().resize_by_hw_list([(2, 3), (4, 5)], 2).get()]
    assert hw == [(3, 2), (5, 4)]
    for i in tool().resize_by_hw_range(((2, 4), (5, 7)), num_case=5).get():
        assert 5 <= i.size[0] < 7 and 2 <= i.size[1] < 4
    assert tool().rotate_by_range((0, 10), num_case=3).num_augmentation() == 3
    # rotating by 180 degrees keeps the size and reverses both axes
    r = tool().rotate_by_list([180]).get()[0]
    np.testing.assert_array_equal(px(r), arr()[::-1, ::-1])


def test_random_crops():
    t = tool(1, seed=3)
    out = t.random_crop((3, 2), num_case=20, inplace=False)
    offsets = set()
    a = arr()
    for o in out:
        p = px(o)
        y, x = p[0, 0, 0] // 10, p[0, 0, 1] // 10
        np.testing.assert_array_equal(p, a[y:y + 2, x:x + 3])
        offsets.add((y, x))
    assert len(offsets) > 3
    rr = tool(2).random_crop_resize((4, 4), num_case=3)
    assert rr.num_augmentation() == 6 and all(i.size == (4, 4) for i in rr.get())


def test_flip_random_is_seeded():
    def run(seed):
        return [px(i).tobytes() for i in tool(12, seed).flip().flip_down().get()]
    assert run(5) == run(5)
    outs = set(run(5))
    assert len(outs) > 1  # some images flipped, some not
    both = tool().flip(2, inplace=False)
    np.testing.assert_array_equal(px(both[0]), arr()[:, ::-1])
    np.testing.assert_array_equal(px(both[1]), arr())
    down = tool().flip_down(2, inplace=False)
    np.testing.assert_array_equal(px(down[0]), arr()[::-1])


def test_pipeline_is_deterministic_per_seed():
    def run(seed):
        t = tool(1, seed).resize_by_range((5, 7)).random_crop((4, 4)).enhance().color_cast()
        return px(t.get()[0]).tobytes()
    assert run(11) == run(11)
    assert len({run(s) for s in range(6)}) > 1


@pytest.mark.parametrize("call, match", [
    (lambda t: t.crop5((3, 3), 6), r"crop5: num_case must be in \[1, 5\], got 6"),
    (lambda t: t.crop5((9, 3), 1), r"crop5: patch .*\(9, 3\).*\(8, 6\)"),
    (lambda t: t.crop3((4, 3)), r"crop3: patch must be square, got \(4, 3\)"),
    (lambda t: t.crop3((4, 4), 4), r"crop3: num_case must be in \[1, 3\]"),
    (lambda t: t.crop8((4, 4), 9), r"crop8: num_case must be in \[1, 8\]"),
    (lambda t: t.random_crop((7, 7)), r"random_crop: patch .*\(7, 7\).*\(8, 6\)"),
    (lambda t: t.resize_by_list([4], 2), r"resize_by_list: num_case must be in \[1, 1\]"),
    (lambda t: t.resize_by_range((5, 5)), r"resize_by_range: range .* \(5, 5\)"),
    (lambda t: t.scale_by_range((0, 1)), r"scale_by_range: ratios must be > 0"),
    (lambda t: t.resize_by_hw_list([(2, 0)]), r"resize_by_hw_list: each hw .*\(2, 0\)"),
    (lambda t: t.flip(3), r"flip: num_case must be 1 .* got 3"),
    (lambda t: t.flip_down(0), r"flip_down: num_case must be 1 .* got 0"),
    (lambda t: t.color_cast(-1), r"color_cast: offset must be in \[0, 255\], got -1"),
    (lambda t: t.enhance(num_case=0), r"enhance: num_case must be an int >= 1, got 0"),
])
def test_method_errors_leave_state_unchanged(call, match):
    t = tool(2)
    before = t.get()
    with pytest.raises(ValueError, match=match):
        call(t)
    assert t.get() is before and len(before) == 2


def test_numbers_must_be_finite_and_sample_sizes_whole():
    a = np.zeros((4, 6, 3), np.uint8)
    for call, match in ((lambda: it.scale(a, float("inf")), "scale: ratio must be a finite number, got inf"),
                        (lambda: it.enhance(a, float("nan")), "enhance: scale must be a finite number, got nan"),
                        (lambda: it.get_list_sample([1, 2, 3], 1.5), r"sample_size must be an int in \[0, 3\]"),
                        (lambda: it.ImageTool().set([a]).rotate_by_list([float("nan")]),
                         "rotate_by_list: every angle must be a finite number")):
        with pytest.raises(ValueError, match=match):
            call()
