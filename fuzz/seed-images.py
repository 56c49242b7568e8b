"""Writes the seed corpus of the `thumbnail_image` target: tiny images, each under 2 KiB,
in every format the thumbnailer detects, with and without EXIF orientation, alpha and
progressive JPEG. Needs Pillow (`pip install pillow`). Run from this folder.
"""

import hashlib
import io
import pathlib

from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "thumbnail_image"


def gradient(mode, size):
    image = Image.new("RGB", size)
    image.putdata(
        [((x * 37) % 256, (y * 53) % 256, ((x + y) * 11) % 256)
         for y in range(size[1]) for x in range(size[0])]
    )
    return image.convert(mode)


def encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    small = gradient("RGB", (12, 9))
    exif = Image.Exif()
    samples = [
        encode(small, "JPEG", quality=60),
        encode(small, "JPEG", quality=60, progressive=True),
        encode(gradient("L", (9, 12)), "JPEG", quality=60),
        encode(gradient("CMYK", (8, 8)), "JPEG", quality=60),
        encode(small, "PNG"),
        encode(gradient("RGBA", (10, 10)), "PNG"),
        encode(gradient("P", (10, 6)), "PNG"),
        encode(gradient("LA", (5, 7)), "PNG"),
        encode(small, "GIF"),
        encode(small, "BMP"),
        encode(small, "TIFF"),
        encode(small, "WEBP", quality=50),
        encode(gradient("RGBA", (6, 6)), "WEBP", lossless=True),
    ]
    for orientation in range(1, 9):
        exif[0x0112] = orientation
        samples.append(encode(gradient("RGB", (8, 5)), "JPEG", quality=50, exif=exif.tobytes()))
    for data in samples:
        assert len(data) < 2048, len(data)
        (OUT / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{OUT}: {len(list(OUT.iterdir()))} files")


if __name__ == "__main__":
    main()
