"""Draw detections on an image: class-coloured boxes with captions."""

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_ssd.data.images import load_image

__all__ = ["class_color", "draw_detections"]


def class_color(label):
    """A bright RGB colour for class `label`, the same on every call.

    Hues are spread with the golden ratio so that neighbouring class indices
    get clearly different colours.
    """
    hue = (int(label) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _text_color(rgb):
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_detections(image, detections, class_names=None, line_width=None, font_size=None):
    """Draw boxes and `"name score"` captions on a copy of `image`.

    Args:
        image: an image path, a PIL image or an `(H, W, 3)` / `(H, W)` array
            (uint8, or floats in [0, 255]).
        detections: one image's detections, the per-image keys of
            docs/outputs.md: `"boxes"` `(K, 4)` pixel xyxy, `"labels"` `(K,)`
            0-based, optionally `"scores"` `(K,)` and `"names"` (what
            `predict_image` and `evaluate(..., return_detections=True)`
            return).
        class_names: optional list of class names used when `detections` has
            no `"names"`; without either, the caption shows the label index.
        line_width: box outline width in pixels; defaults to about 0.4% of
            the image's larger side (at least 2).
        font_size: caption font size; defaults to about 2.5% of the larger
            side (at least 11).

    Returns:
        A new RGB `PIL.Image.Image`; the input is not modified.

    Example:

    >>> dets = predict_image(model, "dog.jpg")
    >>> draw_detections("dog.jpg", dets).save("dog_detections.png")
    """
    canvas = Image.fromarray(load_image(image)).convert("RGB")
    if not isinstance(detections, dict):
        raise ValueError(
            "draw_detections: detections must be a dict with 'boxes', 'scores' and "
            f"'labels', got {type(detections).__name__}"
        )
    missing = [k for k in ("boxes", "labels") if k not in detections]
    if missing:
        raise ValueError(f"draw_detections: detections lack {', '.join(missing)}")
    boxes = np.asarray(detections["boxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(detections["labels"]).reshape(-1).astype(np.int64)
    scores = detections.get("scores")
    scores = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    names = detections.get("names")
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(
            f"draw_detections: {len(boxes)} boxes but {len(labels)} labels"
            + ("" if scores is None else f" and {len(scores)} scores")
        )
    if names is not None and len(names) != len(boxes):
        raise ValueError(
            f"draw_detections: {len(boxes)} boxes but {len(names)} names"
        )

    side = max(canvas.size)
    width = line_width or max(2, int(round(side * 0.004)))
    font = _font(font_size or max(11, int(round(side * 0.025))))
    draw = ImageDraw.Draw(canvas)
    # Draw the lowest scores first so that the most confident boxes end on top.
    order = np.argsort(scores, kind="stable") if scores is not None else range(len(boxes))
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        color = class_color(labels[i])
        draw.rectangle([x1, y1, x2, y2], outline=color, width=width)
        if names is not None:
            name = str(names[i])
        elif class_names is not None and 0 <= labels[i] < len(class_names):
            name = str(class_names[labels[i]])
        else:
            name = str(int(labels[i]))
        caption = name if scores is None else f"{name} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        tw, th = right - left, bottom - top
        pad = max(1, width // 2)
        # Caption above the box, or inside its top edge when there is no room.
        ty = y1 - th - 2 * pad if y1 - th - 2 * pad >= 0 else y1
        tx = min(max(x1, 0), max(canvas.size[0] - tw - 2 * pad, 0))
        draw.rectangle([tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad], fill=color)
        draw.text((tx + pad - left, ty + pad - top), caption, fill=_text_color(color), font=font)
    return canvas
