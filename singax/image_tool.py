"""SINGA's `image_tool`: PIL image augmentation for `data.ImageBatchIter`.

Sizes follow SINGA (and PIL): a `patch` is `(width, height)`; only the
`*_hw` functions take `(height, width)`, as their names say. Every random
choice draws from a `numpy.random.Generator`: the functions take `rng=`, and
`ImageTool(seed=...)` owns one, so a seeded pipeline is reproducible.

Pillow is optional for the rest of singax; it is imported on first use.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ._args import is_int

__all__ = [
    "load_img", "crop", "crop_and_resize", "resize", "scale", "resize_by_hw",
    "color_cast", "enhance", "flip", "flip_down", "get_list_sample", "ImageTool",
]

CROP_POSITIONS = ("left_top", "left_bottom", "right_top", "right_bottom", "center",
                  "left", "right", "top", "bottom", "middle")
SQUARE_POSITIONS = ("left", "center", "right", "top", "middle", "bottom")


def _pil():
    """Return PIL's `Image` and `ImageEnhance` modules, or explain how to get them."""
    try:
        from PIL import Image, ImageEnhance
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("singax.image_tool needs Pillow: pip install pillow") from e
    return Image, ImageEnhance


def _bilinear():
    Image, _ = _pil()
    return getattr(Image, "Resampling", Image).BILINEAR


def _as_pil(img: Any, fn: str):
    """Accept a PIL image or a uint8 (H, W) / (H, W, C) array."""
    Image, _ = _pil()
    if isinstance(img, Image.Image):
        return img
    if isinstance(img, np.ndarray) and img.ndim in (2, 3):
        if img.dtype != np.uint8:   # a cast would wrap 300 to 44 and turn 0.5 into 0
            raise TypeError(f"{fn}: expected a uint8 (H, W[, C]) array, got dtype {img.dtype}; convert "
                            "it first, e.g. np.clip(a * 255, 0, 255).astype(np.uint8) for floats in [0, 1]")
        return Image.fromarray(np.ascontiguousarray(img))
    raise TypeError(f"{fn}: expected a PIL image or a uint8 (H, W[, C]) array, "
                    f"got {type(img).__name__}")


def _finite(fn: str, what: str, value: Any) -> float:
    """`value` as a finite float, else ValueError naming the function and argument."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{fn}: {what} must be a finite number, got {value!r}")
    return number


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _size_pair(size: Sequence[int], fn: str, what: str) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise ValueError(f"{fn}: {what} must be two positive ints, got {tuple(size)}")
    return int(size[0]), int(size[1])


def load_img(path: str, grayscale: bool = False):
    """Read an image file as RGB (or as 8-bit grayscale if `grayscale`)."""
    Image, _ = _pil()
    return Image.open(path).convert("L" if grayscale else "RGB")


def crop(img, patch: Sequence[int], position: str):
    """Cut a `patch` = (width, height) region out of `img` at `position`.

    Args:
        patch: (width, height) of the result; must fit inside the image.
        position: a corner ('left_top', 'left_bottom', 'right_top',
            'right_bottom'), 'center'/'middle', or an edge ('left', 'right',
            'top', 'bottom'; centred along that edge).
    """
    img = _as_pil(img, "crop")
    pw, ph = _size_pair(patch, "crop", "patch (width, height)")
    w, h = img.size
    if pw > w or ph > h:
        raise ValueError(f"crop: patch (width, height)={(pw, ph)} is larger than the "
                         f"image (width, height)={(w, h)}")
    if position not in CROP_POSITIONS:
        raise ValueError(f"crop: position must be one of {CROP_POSITIONS}, got {position!r}")
    xs = {"left": 0, "right": w - pw, "mid": (w - pw) // 2}
    ys = {"top": 0, "bottom": h - ph, "mid": (h - ph) // 2}
    x = xs["left" if "left" in position else "right" if "right" in position else "mid"]
    y = ys["top" if "top" in position else "bottom" if "bottom" in position else "mid"]
    return img.crop((x, y, x + pw, y + ph))


def crop_and_resize(img, patch: Sequence[int], position: str):
    """Cut the largest square at `position` and resize it to `patch` = (width, height).

    'left', 'center', 'right' slide the square along a landscape image;
    'top', 'middle', 'bottom' along a portrait one. 'center' and 'middle'
    both take the central square of any image.
    """
    img = _as_pil(img, "crop_and_resize")
    pw, ph = _size_pair(patch, "crop_and_resize", "patch (width, height)")
    w, h = img.size
    if position not in SQUARE_POSITIONS:
        raise ValueError(f"crop_and_resize: position must be one of {SQUARE_POSITIONS}, "
                         f"got {position!r}")
    if position in ("left", "right") and w < h or position in ("top", "bottom") and h < w:
        raise ValueError(f"crop_and_resize: position {position!r} needs a "
                         f"{'landscape' if position in ('left', 'right') else 'portrait'} "
                         f"image, got (width, height)={(w, h)}")
    s = min(w, h)
    x = {"left": 0, "right": w - s}.get(position, (w - s) // 2)
    y = {"top": 0, "bottom": h - s}.get(position, (h - s) // 2)
    return img.crop((x, y, x + s, y + s)).resize((pw, ph), _bilinear())


def resize(img, small_size: int):
    """Resize so the shorter side is `small_size`, keeping the aspect ratio."""
    img = _as_pil(img, "resize")
    if int(small_size) != small_size or small_size < 1:
        raise ValueError(f"resize: small_size must be a positive int, got {small_size}")
    w, h = img.size
    # the longer side is truncated, as SINGA does
    if w < h:
        new = (small_size, max(1, int(small_size * h / w)))
    else:
        new = (max(1, int(small_size * w / h)), small_size)
    return img.resize(new, _bilinear())


def scale(img, ratio: float):
    """Resize both sides by `ratio` (sizes truncated, at least 1 pixel)."""
    img = _as_pil(img, "scale")
    ratio = _finite("scale", "ratio", ratio)
    if not ratio > 0:
        raise ValueError(f"scale: ratio must be > 0, got {ratio}")
    w, h = img.size
    # the epsilon keeps 6 * 0.5 from landing on 2.999... and truncating to 2
    new = (max(1, int(w * ratio + 1e-9)), max(1, int(h * ratio + 1e-9)))
    return img.resize(new, _bilinear())


def resize_by_hw(img, hw: Sequence[int]):
    """Resize to `hw` = (height, width), ignoring the aspect ratio."""
    img = _as_pil(img, "resize_by_hw")
    h, w = _size_pair(hw, "resize_by_hw", "hw (height, width)")
    return img.resize((w, h), _bilinear())


def color_cast(img, offset: int, rng: np.random.Generator | None = None):
    """Shift channels by random ints in [-offset, offset], clipped to [0, 255].

    As in SINGA, each channel is shifted with probability 1/2 (else left as is).
    """
    Image, _ = _pil()
    img = _as_pil(img, "color_cast")
    if not 0 <= offset <= 255:
        raise ValueError(f"color_cast: offset must be in [0, 255], got {offset}")
    rng = _rng(rng)
    x = np.asarray(img, dtype=np.int16)
    channels = 1 if x.ndim == 2 else x.shape[2]
    shift = rng.integers(-offset, offset, size=channels, endpoint=True)
    shift = shift * rng.integers(0, 2, size=channels)
    y = np.clip(x + (shift if x.ndim == 3 else shift[0]), 0, 255).astype(np.uint8)
    return Image.fromarray(y, img.mode)


def enhance(img, scale: float, rng: np.random.Generator | None = None):
    """Randomly adjust color, contrast, brightness and sharpness.

    Each of the four is applied (in that order) with probability 1/2, with a
    factor drawn uniformly from [1 - scale, 1 + scale].
    """
    _, ImageEnhance = _pil()
    img = _as_pil(img, "enhance")
    scale = _finite("enhance", "scale", scale)
    if not 0 <= scale:
        raise ValueError(f"enhance: scale must be >= 0, got {scale}")
    rng = _rng(rng)
    for kind in (ImageEnhance.Color, ImageEnhance.Contrast,
                 ImageEnhance.Brightness, ImageEnhance.Sharpness):
        use, factor = rng.integers(0, 2), rng.uniform(1 - scale, 1 + scale)
        if use:
            img = kind(img).enhance(factor)
    return img


def flip(img):
    """Mirror left to right."""
    Image, _ = _pil()
    return _as_pil(img, "flip").transpose(getattr(Image, "Transpose", Image).FLIP_LEFT_RIGHT)


def flip_down(img):
    """Mirror top to bottom."""
    Image, _ = _pil()
    return _as_pil(img, "flip_down").transpose(getattr(Image, "Transpose", Image).FLIP_TOP_BOTTOM)


def get_list_sample(l: Sequence, sample_size: int, rng: np.random.Generator | None = None) -> list:
    """Pick `sample_size` distinct items of `l` at random, kept in `l`'s order."""
    if not is_int(sample_size) or not 0 <= sample_size <= len(l):
        raise ValueError(f"get_list_sample: sample_size must be an int in [0, {len(l)}] "
                         f"(the list length), got {sample_size}")
    idx = np.sort(_rng(rng).choice(len(l), size=sample_size, replace=False))
    return [l[i] for i in idx]


class ImageTool:
    """A chainable augmentation pipeline over a list of PIL images.

    Each augmentation maps every current image to `num_case` variants, kept
    together per source image. With `inplace=True` the list is replaced and
    `self` is returned (for chaining); with `inplace=False` the new list is
    returned and the tool is left unchanged. Set `num_case` to 1 for training
    and to the number of cases for testing.

    Args:
        seed: seed of the tool's `numpy.random.Generator` (None: fresh entropy).
    """

    def __init__(self, seed: int | None = None):
        self.imgs: list = []
        self.rng = np.random.default_rng(seed)

    # ---- holding images ---------------------------------------------------
    def load(self, path: str, grayscale: bool = False) -> "ImageTool":
        """Start over from the image file at `path`."""
        self.imgs = [load_img(path, grayscale)]
        return self

    def set(self, imgs) -> "ImageTool":
        """Start over from one image or a list of images."""
        self.imgs = list(imgs) if isinstance(imgs, (list, tuple)) else [imgs]
        return self

    def append(self, img) -> "ImageTool":
        self.imgs.append(img)
        return self

    def get(self) -> list:
        return self.imgs

    def num_augmentation(self) -> int:
        """Number of images currently held (SINGA leaves this unimplemented)."""
        return len(self.imgs)

    # ---- plumbing ---------------------------------------------------------
    def _apply(self, variants, inplace: bool):
        """Replace each image by the list `variants(img)` returns."""
        new = [out for img in self.imgs for out in variants(img)]
        if inplace:
            self.imgs = new
            return self
        return new

    def _sample(self, items: Sequence, num_case: int, fn: str) -> list:
        if not 1 <= num_case <= len(items):
            raise ValueError(f"ImageTool.{fn}: num_case must be in [1, {len(items)}], "
                             f"got {num_case}")
        return list(items) if num_case == len(items) else get_list_sample(items, num_case, self.rng)

    @staticmethod
    def _check_num_case(num_case: int, fn: str):
        if int(num_case) != num_case or num_case < 1:
            raise ValueError(f"ImageTool.{fn}: num_case must be an int >= 1, got {num_case}")

    @staticmethod
    def _check_range(rng: Sequence, fn: str, ints: bool):
        if len(rng) != 2 or not rng[0] < rng[1] or ints and any(int(v) != v for v in rng):
            raise ValueError(f"ImageTool.{fn}: range must be (begin, end) with begin < end"
                             f"{' (ints)' if ints else ''}, got {tuple(rng)}")

    # ---- geometric --------------------------------------------------------
    def scale_by_range(self, rng: Sequence[float], inplace: bool = True, num_case: int = 1):
        """Scale by `num_case` ratios drawn uniformly from [begin, end)."""
        self._check_range(rng, "scale_by_range", ints=False)
        self._check_num_case(num_case, "scale_by_range")
        if rng[0] <= 0:
            raise ValueError(f"ImageTool.scale_by_range: ratios must be > 0, got {tuple(rng)}")
        return self._apply(lambda img: [scale(img, r) for r in
                                        self.rng.uniform(rng[0], rng[1], size=num_case)], inplace)

    def scale_by_list(self, scale_list: Sequence[float], num_case: int = 1, inplace: bool = True):
        """Scale by `num_case` distinct ratios picked from `scale_list`."""
        self._sample(scale_list, num_case, "scale_by_list")  # validate before touching images
        return self._apply(lambda img: [scale(img, r) for r in
                                        self._sample(scale_list, num_case, "scale_by_list")], inplace)

    def resize_by_range(self, rng: Sequence[int], inplace: bool = True, num_case: int = 1):
        """Resize the shorter side to `num_case` distinct sizes from range(begin, end)."""
        self._check_range(rng, "resize_by_range", ints=True)
        return self.resize_by_list(list(range(int(rng[0]), int(rng[1]))), num_case, inplace)

    def resize_by_list(self, size_list: Sequence[int], num_case: int = 1, inplace: bool = True):
        """Resize the shorter side to `num_case` distinct sizes from `size_list`."""
        self._sample(size_list, num_case, "resize_by_list")
        return self._apply(lambda img: [resize(img, s) for s in
                                        self._sample(size_list, num_case, "resize_by_list")], inplace)

    def resize_by_hw_range(self, rng: Sequence[Sequence[int]], inplace: bool = True,
                           num_case: int = 1):
        """Resize to `num_case` random (height, width) pairs.

        Args:
            rng: ((h_begin, h_end), (w_begin, w_end)), ends excluded; a single
                (begin, end) pair serves both sides (drawn independently).
        """
        hr, wr = (rng, rng) if np.ndim(rng) == 1 else rng
        self._check_range(hr, "resize_by_hw_range", ints=True)
        self._check_range(wr, "resize_by_hw_range", ints=True)
        self._check_num_case(num_case, "resize_by_hw_range")

        def variants(img):
            hs = self.rng.integers(hr[0], hr[1], size=num_case)
            ws = self.rng.integers(wr[0], wr[1], size=num_case)
            return [resize_by_hw(img, (int(h), int(w))) for h, w in zip(hs, ws)]
        return self._apply(variants, inplace)

    def resize_by_hw_list(self, hw_list: Sequence[Sequence[int]], num_case: int = 1,
                          inplace: bool = True):
        """Resize to `num_case` distinct (height, width) pairs from `hw_list`."""
        self._sample(hw_list, num_case, "resize_by_hw_list")
        for hw in hw_list:
            _size_pair(hw, "ImageTool.resize_by_hw_list", "each hw (height, width)")
        return self._apply(lambda img: [resize_by_hw(img, hw) for hw in
                                        self._sample(hw_list, num_case, "resize_by_hw_list")], inplace)

    def rotate_by_range(self, rng: Sequence[int], inplace: bool = True, num_case: int = 1):
        """Rotate (counter-clockwise, same size) by `num_case` distinct int degrees
        from range(begin, end)."""
        self._check_range(rng, "rotate_by_range", ints=True)
        return self.rotate_by_list(list(range(int(rng[0]), int(rng[1]))), num_case, inplace)

    def rotate_by_list(self, angle_list: Sequence[float], num_case: int = 1, inplace: bool = True):
        """Rotate (counter-clockwise, same size) by `num_case` distinct angles in degrees."""
        for a in angle_list:
            _finite("rotate_by_list", "every angle", a)
        self._sample(angle_list, num_case, "rotate_by_list")
        return self._apply(lambda img: [img.rotate(float(a)) for a in
                                        self._sample(angle_list, num_case, "rotate_by_list")], inplace)

    # ---- crops ------------------------------------------------------------
    def _check_patch(self, patch, fn: str):
        pw, ph = _size_pair(patch, f"ImageTool.{fn}", "patch (width, height)")
        for img in self.imgs:
            w, h = img.size
            if pw > w or ph > h:
                raise ValueError(f"ImageTool.{fn}: patch (width, height)={(pw, ph)} is larger "
                                 f"than an image (width, height)={(w, h)}")
        return pw, ph

    def crop5(self, patch: Sequence[int], num_case: int = 1, inplace: bool = True):
        """Crop `patch` = (width, height) at `num_case` of the four corners and the center.

        SINGA: after the first image, every image reused the first one's sampled
        positions; here each image samples its own.
        """
        self._sample(CROP_POSITIONS[:5], num_case, "crop5")
        self._check_patch(patch, "crop5")
        return self._apply(lambda img: [crop(img, patch, p) for p in
                                        self._sample(CROP_POSITIONS[:5], num_case, "crop5")], inplace)

    @staticmethod
    def _square_positions(img) -> tuple[str, str, str]:
        w, h = img.size
        return ("left", "center", "right") if w > h else ("top", "middle", "bottom")

    def crop3(self, patch: Sequence[int], num_case: int = 1, inplace: bool = True):
        """Take the largest square at `num_case` of three places along the longer
        side (left/center/right or top/middle/bottom), resized to a square `patch`."""
        pw, ph = _size_pair(patch, "ImageTool.crop3", "patch (width, height)")
        if pw != ph:
            raise ValueError(f"ImageTool.crop3: patch must be square, got {(pw, ph)}")
        self._sample(range(3), num_case, "crop3")
        return self._apply(lambda img: [crop_and_resize(img, patch, p) for p in
                                        self._sample(self._square_positions(img), num_case, "crop3")],
                           inplace)

    def crop8(self, patch: Sequence[int], num_case: int = 1, inplace: bool = True):
        """`num_case` distinct cases out of crop5's five and crop3's three.

        SINGA: its variants came grouped as all crop5 outputs, then all crop3
        outputs; here they stay together per source image, like every method.
        """
        pw, ph = _size_pair(patch, "ImageTool.crop8", "patch (width, height)")
        if pw != ph:
            raise ValueError(f"ImageTool.crop8: patch must be square, got {(pw, ph)}")
        self._sample(range(8), num_case, "crop8")
        self._check_patch(patch, "crop8")

        def variants(img):
            cases = self._sample(range(8), num_case, "crop8")
            square = self._square_positions(img)
            return [crop(img, patch, CROP_POSITIONS[c]) if c < 5 else
                    crop_and_resize(img, patch, square[c - 5]) for c in cases]
        return self._apply(variants, inplace)

    def random_crop(self, patch: Sequence[int], inplace: bool = True, num_case: int = 1):
        """Crop `patch` = (width, height) at `num_case` uniformly random offsets."""
        pw, ph = self._check_patch(patch, "random_crop")
        self._check_num_case(num_case, "random_crop")

        def variants(img):
            w, h = img.size
            xs = self.rng.integers(0, w - pw, size=num_case, endpoint=True)
            ys = self.rng.integers(0, h - ph, size=num_case, endpoint=True)
            return [img.crop((int(x), int(y), int(x) + pw, int(y) + ph)) for x, y in zip(xs, ys)]
        return self._apply(variants, inplace)

    def random_crop_resize(self, patch: Sequence[int], inplace: bool = True, num_case: int = 1,
                           area: tuple[float, float] = (0.08, 1.0),
                           aspect: tuple[float, float] = (3 / 4, 4 / 3)):
        """Crop a random region (area fraction in `area`, width/height in
        `aspect`) and resize it to `patch` = (width, height).

        After 10 draws that do not fit, the whole image is resized instead.
        """
        pw, ph = _size_pair(patch, "ImageTool.random_crop_resize", "patch (width, height)")
        self._check_num_case(num_case, "random_crop_resize")

        def one(img):
            w, h = img.size
            for _ in range(10):
                target = self.rng.uniform(*area) * w * h
                ratio = self.rng.uniform(*aspect)
                cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
                if 1 <= cw <= w and 1 <= ch <= h:
                    x = int(self.rng.integers(0, w - cw, endpoint=True))
                    y = int(self.rng.integers(0, h - ch, endpoint=True))
                    return img.crop((x, y, x + cw, y + ch)).resize((pw, ph), _bilinear())
            return img.resize((pw, ph), _bilinear())
        return self._apply(lambda img: [one(img) for _ in range(num_case)], inplace)

    # ---- flips and colour -------------------------------------------------
    def _flip(self, fn, name: str, num_case: int, inplace: bool):
        if num_case not in (1, 2):
            raise ValueError(f"ImageTool.{name}: num_case must be 1 (flip at random) or 2 "
                             f"(flipped and original), got {num_case}")
        if num_case == 2:
            return self._apply(lambda img: [fn(img), img], inplace)
        return self._apply(lambda img: [fn(img) if self.rng.integers(0, 2) else img], inplace)

    def flip(self, num_case: int = 1, inplace: bool = True):
        """num_case=1: mirror left-right with probability 1/2; 2: [mirrored, original]."""
        return self._flip(flip, "flip", num_case, inplace)

    def flip_down(self, num_case: int = 1, inplace: bool = True):
        """num_case=1: mirror top-bottom with probability 1/2; 2: [mirrored, original]."""
        return self._flip(flip_down, "flip_down", num_case, inplace)

    def color_cast(self, offset: int = 20, inplace: bool = True, num_case: int = 1):
        """`num_case` random colour casts of each image (see `color_cast`)."""
        if not 0 <= offset <= 255:
            raise ValueError(f"ImageTool.color_cast: offset must be in [0, 255], got {offset}")
        self._check_num_case(num_case, "color_cast")
        return self._apply(lambda img: [color_cast(img, offset, self.rng)
                                        for _ in range(num_case)], inplace)

    def enhance(self, scale: float = 0.2, inplace: bool = True, num_case: int = 1):
        """`num_case` random enhancements of each image (see `enhance`)."""
        if not scale >= 0:
            raise ValueError(f"ImageTool.enhance: scale must be >= 0, got {scale}")
        self._check_num_case(num_case, "enhance")
        return self._apply(lambda img: [enhance(img, scale, self.rng)
                                        for _ in range(num_case)], inplace)
