#!/usr/bin/python3
"""Strict, independent GGUF layout checker (Python stdlib `struct` only).

It applies the rules ggml's own reader (gguf_init_from_file) enforces, so a
file that passes here loads in ggml/llama.cpp tools as far as the container
format goes:

  * magic "GGUF", version 2 or 3, u64 tensor and key/value counts;
  * every key/value parses (13 value types, arrays of any type, nested);
  * keys and tensor names are unique, names shorter than 64 bytes;
  * general.alignment, when present, is a u32 power of two (default 32);
  * 1..4 dimensions, each >= 1, ne[0] a multiple of the type's block size;
  * tensor offsets are exactly the running sum of the previous tensors' sizes
    each padded to the alignment (ggml refuses any other placement);
  * the data section starts at the first aligned offset after the infos and
    the file holds every tensor's bytes (with their padding);
  * the padding bytes are zero (ggml writes zeros; a checker catches garbage).

Usage: check_gguf.py FILE...   prints one JSON summary per file, exit 1 on the
first violation (with the reason on stderr). Importable: check(path) -> dict.
"""
import json
import struct
import sys

# GGML type id -> (name, elements per block, bytes per block), for the types
# ggml defines today (enough to size any tensor in the wild).
GGML_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
    10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144),
    13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210), 15: ("q8_K", 256, 292),
    24: ("i8", 1, 1), 25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8),
    28: ("f64", 1, 8), 30: ("bf16", 1, 2),
}

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
           10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


class Bad(Exception):
    pass


class Cursor:
    def __init__(self, data):
        self.d = data
        self.o = 0

    def take(self, n, what):
        if n < 0 or self.o + n > len(self.d):
            raise Bad("truncated reading %s at offset %d (need %d bytes, file is %d)"
                      % (what, self.o, n, len(self.d)))
        b = self.d[self.o:self.o + n]
        self.o += n
        return b

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.unpack("<Q", what)
        return bytes(self.take(n, what))

    def value(self, vt, what, depth=0):
        if vt in SCALARS:
            v = self.unpack(SCALARS[vt], what)
            if vt == 7 and v not in (0, 1):
                raise Bad("%s: bool byte %d is neither 0 nor 1" % (what, v))
            return v
        if vt == STRING:
            return self.string(what)
        if vt == ARRAY:
            if depth > 8:
                raise Bad("%s: arrays nested too deep" % what)
            et = self.unpack("<I", what)
            n = self.unpack("<Q", what)
            if et not in SCALARS and et not in (STRING, ARRAY):
                raise Bad("%s: unknown array element type %d" % (what, et))
            if et in SCALARS:
                size = struct.calcsize(SCALARS[et])
                raw = self.take(n * size, what)
                return list(struct.unpack("<%d%s" % (n, SCALARS[et][1]), raw))
            return [self.value(et, what, depth + 1) for _ in range(n)]
        raise Bad("%s: unknown value type %d" % (what, vt))


def check(path):
    with open(path, "rb") as f:
        data = f.read()
    c = Cursor(memoryview(data))
    if bytes(c.take(4, "magic")) != b"GGUF":
        raise Bad("bad magic")
    version = c.unpack("<I", "version")
    if version not in (2, 3):
        raise Bad("unsupported version %d" % version)
    n_tensors = c.unpack("<Q", "tensor count")
    n_kv = c.unpack("<Q", "kv count")
    meta = {}
    for i in range(n_kv):
        key = c.string("key %d" % i).decode("utf-8")
        if key in meta:
            raise Bad("duplicate key %r" % key)
        vt = c.unpack("<I", "type of %s" % key)
        meta[key] = (vt, c.value(vt, key))
    align = 32
    if "general.alignment" in meta:
        vt, align = meta["general.alignment"]
        if vt != 4 or align == 0 or align & (align - 1):
            raise Bad("general.alignment must be a u32 power of two, got type %d value %r"
                      % (vt, align))
    tensors = []
    names = set()
    for i in range(n_tensors):
        name = c.string("tensor %d name" % i)
        if len(name) >= 64 or len(name) == 0:
            raise Bad("tensor %d: name length %d outside 1..63" % (i, len(name)))
        name = name.decode("utf-8")
        if name in names:
            raise Bad("duplicate tensor %r" % name)
        names.add(name)
        nd = c.unpack("<I", name)
        if not 1 <= nd <= 4:
            raise Bad("tensor %s: %d dims" % (name, nd))
        ne = [c.unpack("<Q", name) for _ in range(nd)]
        ttype = c.unpack("<I", name)
        off = c.unpack("<Q", name)
        if ttype not in GGML_TYPES:
            raise Bad("tensor %s: unknown type %d" % (name, ttype))
        tname, be, bb = GGML_TYPES[ttype]
        if any(x < 1 or x >= 2**63 for x in ne):
            raise Bad("tensor %s: bad dims %r" % (name, ne))
        if ne[0] % be:
            raise Bad("tensor %s: ne[0]=%d not a multiple of %s's block %d"
                      % (name, ne[0], tname, be))
        n = 1
        for x in ne:
            n *= x
        if n >= 2**63:
            raise Bad("tensor %s: element count overflows" % name)
        size = n // be * bb
        tensors.append({"name": name, "ne": ne, "type": tname, "offset": off, "size": size})
    data_start = (c.o + align - 1) // align * align
    if n_tensors and data_start > len(data):
        raise Bad("data section starts at %d, past end of file (%d)" % (data_start, len(data)))
    if any(data[c.o:data_start]):
        raise Bad("non-zero padding before the data section")
    expect = 0
    for t in tensors:
        if t["offset"] != expect:
            raise Bad("tensor %s: offset %d, ggml expects %d (previous tensors padded to %d)"
                      % (t["name"], t["offset"], expect, align))
        end = data_start + t["offset"] + t["size"]
        padded = (t["size"] + align - 1) // align * align
        if data_start + t["offset"] + padded > len(data):
            raise Bad("tensor %s: data with padding ends at %d, past end of file (%d)"
                      % (t["name"], data_start + t["offset"] + padded, len(data)))
        if any(data[end:data_start + t["offset"] + padded]):
            raise Bad("tensor %s: non-zero padding after its data" % t["name"])
        expect += padded
    if n_tensors and data_start + expect != len(data):
        raise Bad("file is %d bytes, the data section ends at %d" % (len(data), data_start + expect))

    def plain(v):
        if isinstance(v, (bytes, memoryview)):
            return bytes(v).decode("utf-8", errors="replace")
        if isinstance(v, list):
            return [plain(x) for x in v[:8]] + (["..."] if len(v) > 8 else [])
        return v

    return {
        "path": path, "version": version, "alignment": align, "size": len(data),
        "data_start": data_start, "n_tensors": n_tensors,
        "meta": {k: plain(v) for k, (vt, v) in meta.items()},
        "meta_types": {k: vt for k, (vt, v) in meta.items()},
        "meta_len": {k: len(v) for k, (vt, v) in meta.items() if isinstance(v, list)},
        "tensors": tensors,
    }


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for p in argv[1:]:
        try:
            r = check(p)
        except Bad as e:
            print("%s: %s" % (p, e), file=sys.stderr)
            return 1
        r.pop("meta")
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
