"""Encoded image files inside a serving graph: size from the header, EXIF orientation.

TF Serving runs the SavedModel's graph only, so what the CLI does with PIL
before decoding (refusing decompression bombs, turning phone photos upright)
is written here with TensorFlow string ops:

- `header_size` reads a file's height and width from its header (JPEG's
  frame header, PNG's IHDR, GIF's screen descriptor, BMP's info header,
  WebP's VP8 / VP8L / VP8X chunk) without decoding it, so a huge image is
  refused before it takes memory.
- `exif_orientation` reads a JPEG's EXIF orientation tag (1..8; 1 when
  absent), and `apply_orientation` turns the decoded photo upright, as
  `PIL.ImageOps.exif_transpose` does for `keras-defusion detect`.
"""

# Bytes of a file read for its header, and for a JPEG's EXIF block (APP1
# segments are at most 64 KB and come first).
HEADER_BYTES = 64
EXIF_SEARCH_BYTES = 65536 + 64
# Marker segments walked before a JPEG's first scan (cameras write ~10-20).
MAX_JPEG_SEGMENTS = 256
# IFD0 entries read in search of the orientation tag (cameras write ~10-20).
MAX_IFD_ENTRIES = 64
ORIENTATION_TAG = 0x0112


def _padded_head(data, length):
    """The first `length` bytes of `data`, zero-padded so every slice exists."""
    import tensorflow as tf

    head = tf.strings.substr(data, 0, length)
    return tf.strings.join([head, tf.constant(b"\0" * length)])


def _uint(head, offset, length, little_endian=True):
    """An unsigned integer of `length` bytes at `offset` (int64)."""
    import tensorflow as tf

    raw = tf.io.decode_raw(tf.strings.substr(head, offset, length), tf.uint8)
    raw = tf.cast(raw, tf.int64)
    weights = tf.constant([256**i for i in range(length)], tf.int64)
    if not little_endian:
        weights = tf.reverse(weights, [0])
    return tf.reduce_sum(raw * weights)


def _starts(head, offset, magic):
    import tensorflow as tf

    return tf.equal(tf.strings.substr(head, offset, len(magic)), magic)


def file_formats(data):
    """Which supported format the bytes of `data` start like: name -> scalar bool."""
    return _head_formats(_padded_head(data, HEADER_BYTES))


def _head_formats(head):
    """`file_formats` of a head already padded to `HEADER_BYTES`."""
    import tensorflow as tf

    return {
        "JPEG": _starts(head, 0, b"\xff\xd8\xff"),
        "PNG": _starts(head, 0, b"\x89PNG\r\n\x1a\n"),
        "GIF": tf.logical_or(_starts(head, 0, b"GIF87a"), _starts(head, 0, b"GIF89a")),
        "BMP": _starts(head, 0, b"BM"),
        "WebP": tf.logical_and(_starts(head, 0, b"RIFF"), _starts(head, 8, b"WEBP")),
    }


def is_jpeg(data):
    return file_formats(data)["JPEG"]


def header_size(data):
    """(height, width) of an encoded image from its header, int64; (0, 0) when unknown.

    Args:
        data: a scalar string tensor, the bytes of a JPEG, PNG, GIF, BMP or
            WebP file.
    """
    import tensorflow as tf

    head = _padded_head(data, HEADER_BYTES)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def png():  # IHDR: width, height, big-endian, at 16 and 20
        return _uint(head, 20, 4, False), _uint(head, 16, 4, False)

    def gif():  # logical screen: width, height, little-endian, at 6 and 8
        return _uint(head, 8, 2), _uint(head, 6, 2)

    def bmp():  # BITMAPINFOHEADER: width, height (negative: top-down) at 18 and 22
        width, height = _uint(head, 18, 4), _uint(head, 22, 4)
        height = tf.where(height >= 2**31, 2**32 - height, height)
        width = tf.where(width >= 2**31, 2**32 - width, width)
        return height, width

    def webp():
        chunk = tf.strings.substr(head, 12, 4)
        # VP8 (lossy): 14-bit width and height after the start code, at 26 and 28.
        lossy = (_uint(head, 28, 2) % 16384, _uint(head, 26, 2) % 16384)
        # VP8L (lossless): 14-bit width-1 and height-1 packed from byte 21.
        bits = _uint(head, 21, 4)
        lossless = ((bits // 16384) % 16384 + 1, bits % 16384 + 1)
        # VP8X (extended): 24-bit canvas width-1 and height-1 at 24 and 27.
        extended = (_uint(head, 27, 3) + 1, _uint(head, 24, 3) + 1)
        height = tf.case([(tf.equal(chunk, b"VP8 "), lambda: lossy[0]),
                          (tf.equal(chunk, b"VP8L"), lambda: lossless[0]),
                          (tf.equal(chunk, b"VP8X"), lambda: extended[0])],
                         default=lambda: tf.constant(0, tf.int64))
        width = tf.case([(tf.equal(chunk, b"VP8 "), lambda: lossy[1]),
                         (tf.equal(chunk, b"VP8L"), lambda: lossless[1]),
                         (tf.equal(chunk, b"VP8X"), lambda: extended[1])],
                        default=lambda: tf.constant(0, tf.int64))
        return height, width

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    formats = _head_formats(head)
    return tf.case(
        [(formats["JPEG"], jpeg), (formats["PNG"], png), (formats["GIF"], gif),
         (formats["BMP"], bmp), (formats["WebP"], webp)],
        default=unknown,
    )


def _contains(data, pattern):
    """Whether the bytes of `data` contain `pattern`, as a bool."""
    import tensorflow as tf

    return tf.equal(tf.size(tf.strings.split(data, sep=pattern, maxsplit=1)), 2)


def _jpeg_cut_short(data):
    """Whether a JPEG ends before its end-of-image marker (FF D9) follows its first scan.

    Walks the marker segments from the start to the first scan (SOS); the
    EOI must come after it (bytes appended after EOI, as in motion photos,
    are fine). A file the walk cannot follow is left to the decoder.
    """
    import tensorflow as tf

    length = tf.cast(tf.strings.length(data), tf.int64)

    def segment(position):
        """A marker's two bytes and its segment's length (big-endian)."""
        head = _padded_head(tf.strings.substr(data, tf.minimum(position, length), 4), 4)
        return _uint(head, 0, 1), _uint(head, 1, 1), _uint(head, 2, 2, False)

    def walking(position, state):
        return tf.equal(state, 0)

    def step(position, state):
        first, marker, size = segment(position)
        at_end = position + 4 > length
        state = tf.case([(at_end, lambda: tf.constant(2, tf.int64)),          # cut short
                         (tf.not_equal(first, 0xFF), lambda: tf.constant(3, tf.int64)),
                         (tf.equal(marker, 0xDA), lambda: tf.constant(1, tf.int64))],
                        default=lambda: tf.constant(0, tf.int64))
        # FF FF is fill before a marker; every other marker here has a length.
        advance = tf.where(tf.equal(marker, 0xFF), tf.constant(1, tf.int64), 2 + size)
        return tf.where(tf.equal(state, 0), position + advance, position), state

    position, state = tf.while_loop(walking, step, (tf.constant(2, tf.int64), tf.constant(0, tf.int64)),
                                    maximum_iterations=MAX_JPEG_SEGMENTS)
    position = tf.minimum(position, length)
    scan = tf.strings.substr(data, position, length - position)
    return tf.logical_or(tf.equal(state, 2),
                         tf.logical_and(tf.equal(state, 1),
                                        tf.logical_not(_contains(scan, b"\xff\xd9"))))


def is_cut_short(data):
    """Whether an encoded image's bytes end before the file does (a bool).

    JPEG: no end-of-image marker after the first scan. PNG: no IEND chunk
    with its checksum. BMP and WebP: fewer bytes than the header declares.
    GIF is not checked (its decoder accepts a missing trailer).
    """
    import tensorflow as tf

    head = _padded_head(data, HEADER_BYTES)
    length = tf.cast(tf.strings.length(data), tf.int64)
    formats = _head_formats(head)
    return tf.case(
        [
            (formats["JPEG"], lambda: _jpeg_cut_short(data)),
            (formats["PNG"], lambda: tf.logical_not(_contains(data, b"IEND\xaeB`\x82"))),
            (formats["BMP"], lambda: length < _uint(head, 2, 4)),
            (formats["WebP"], lambda: length < _uint(head, 4, 4) + 8),
        ],
        default=lambda: tf.constant(False),
    )


def exif_orientation(data):
    """The EXIF orientation (int32, 1..8) of a JPEG; 1 when it has none.

    Reads IFD0 of the first `Exif` block in the file's first 64 KB, in
    either byte order; any other value than 1..8 counts as 1.
    """
    import tensorflow as tf

    head = _padded_head(data, EXIF_SEARCH_BYTES + 12 * MAX_IFD_ENTRIES + 16)
    parts = tf.strings.split(tf.strings.substr(head, 0, EXIF_SEARCH_BYTES), sep=b"Exif\0\0",
                             maxsplit=1)
    found = tf.logical_and(tf.equal(tf.size(parts), 2), is_jpeg(data))

    def read():
        tiff = tf.cast(tf.strings.length(parts[0]), tf.int64) + 6
        little = tf.equal(tf.strings.substr(head, tiff, 2), b"II")

        def uint(offset, length):
            offset = tf.minimum(offset, EXIF_SEARCH_BYTES)  # stays inside the padded head
            return tf.cond(little, lambda: _uint(head, offset, length, True),
                           lambda: _uint(head, offset, length, False))

        ifd = tiff + uint(tiff + 4, 4)
        count = tf.minimum(uint(ifd, 2), MAX_IFD_ENTRIES)
        start = tf.minimum(ifd + 2, EXIF_SEARCH_BYTES)
        entries = tf.io.decode_raw(tf.strings.substr(head, start, 12 * MAX_IFD_ENTRIES), tf.uint8)
        entries = tf.cast(tf.reshape(entries, [MAX_IFD_ENTRIES, 12]), tf.int64)
        tags = tf.where(little, entries[:, 0] + 256 * entries[:, 1],
                        256 * entries[:, 0] + entries[:, 1])
        values = tf.where(little, entries[:, 8] + 256 * entries[:, 9],
                          256 * entries[:, 8] + entries[:, 9])
        match = tf.logical_and(tf.equal(tags, ORIENTATION_TAG),
                               tf.range(MAX_IFD_ENTRIES, dtype=tf.int64) < count)
        value = tf.reduce_max(tf.where(match, values, tf.zeros_like(values)))
        return tf.where(tf.logical_and(value >= 1, value <= 8), value, 1)

    return tf.cast(tf.cond(found, read, lambda: tf.constant(1, tf.int64)), tf.int32)


def apply_orientation(image, orientation):
    """`image` [H, W, C] turned upright for EXIF `orientation` (1..8)."""
    import tensorflow as tf

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    branches = [
        lambda: image,                                      # 1: upright
        lambda: tf.image.flip_left_right(image),            # 2: mirrored
        lambda: tf.image.rot90(image, 2),                   # 3: upside down
        lambda: tf.image.flip_up_down(image),               # 4: mirrored, upside down
        lambda: transpose(image),                           # 5: transposed
        lambda: tf.image.rot90(image, 3),                   # 6: on its side, turn clockwise
        lambda: tf.image.rot90(transpose(image), 2),        # 7: transversed
        lambda: tf.image.rot90(image, 1),                   # 8: turn anticlockwise
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)

