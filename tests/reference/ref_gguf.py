"""Independent GGUF reader for the numpy reference (not shared with the C code).

Written from the GGUF format description (ggml's gguf.h / docs/gguf.md):

  header:  magic "GGUF" (4 bytes), u32 version (2 or 3), u64 n_tensors, u64 n_kv
           (version 1 used u32 counts; refused here)
  n_kv x:  key = string (u64 length + bytes), u32 value type, value
  n_tensors x tensor info: name string, u32 n_dims, n_dims x u64 ne (ne[0] is the
           innermost, contiguous dimension), u32 ggml type, u64 offset (relative to
           the start of the data section)
  padding to general.alignment (default 32), then the data section.

Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
9 array (u32 element type, u64 count, elements), 10 u64, 11 i64, 12 f64.

Tensors are returned as numpy float arrays shaped (ne[n-1], ..., ne[0]), i.e. a
weight matrix with ne = [in, out] is an (out, in) array so that y = W @ x.
Quantized blocks are dequantized here, from the block layouts described below.
"""
import struct

import numpy as np

GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8
GGML_Q4_K, GGML_Q6_K, GGML_BF16 = 12, 14, 30

TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
              9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
              15: "Q8_K", 30: "BF16"}

# (elements per block, bytes per block)
BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_Q8_0: (32, 34),
         GGML_Q4_0: (32, 18), GGML_Q4_K: (256, 144), GGML_Q6_K: (256, 210)}

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}


class GGUFError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.b = data
        self.o = 0

    def take(self, n):
        if self.o + n > len(self.b):
            raise GGUFError("truncated at offset %d (need %d bytes)" % (self.o, n))
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.scalar("<Q")
        return bytes(self.take(n)).decode("utf-8", errors="surrogateescape")

    def value(self, vt):
        if vt in _SCALAR:
            return self.scalar(_SCALAR[vt])
        if vt == 8:
            return self.string()
        if vt == 9:
            et = self.scalar("<I")
            n = self.scalar("<Q")
            if et in _SCALAR and et != 7:
                fmt = _SCALAR[et]
                sz = struct.calcsize(fmt)
                return np.frombuffer(self.take(n * sz), dtype=np.dtype(fmt)).tolist()
            return [self.value(et) for _ in range(n)]
        raise GGUFError("unknown metadata value type %d" % vt)


def _f16(buf):
    return np.frombuffer(buf, dtype="<f2").astype(np.float32)


def dequant_q8_0(raw, n):
    # block of 32: f16 scale d, then 32 x int8 q; x = d * q
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = _f16(blk[:, 0:2].tobytes()).reshape(-1, 1)
    q = blk[:, 2:].view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)[:n]


def dequant_q4_0(raw, n):
    # block of 32: f16 scale d, 16 bytes; byte j holds element j (low nibble) and
    # element j+16 (high nibble), both offset by 8; x = d * (nibble - 8)
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = _f16(blk[:, 0:2].tobytes()).reshape(-1, 1)
    qs = blk[:, 2:]
    lo = (qs & 0x0F).astype(np.int32) - 8
    hi = (qs >> 4).astype(np.int32) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    return (d * q).reshape(-1)[:n]


def _k4_scale_min(sc, j):
    # 12 bytes pack eight 6-bit scales and eight 6-bit mins: sub-blocks 0-3 keep
    # them in the low 6 bits of bytes 0-3 (scale) and 4-7 (min); sub-blocks 4-7
    # keep their low 4 bits in the nibbles of bytes 8-11 and their top 2 bits in
    # the high 2 bits of bytes 0-3 (scale) and 4-7 (min).
    if j < 4:
        return sc[:, j] & 63, sc[:, j + 4] & 63
    s = (sc[:, j + 4] & 0x0F) | ((sc[:, j - 4] >> 6) << 4)
    m = (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)
    return s, m


def dequant_q4_k(raw, n):
    # super-block of 256: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of
    # nibbles. 8 sub-blocks of 32; x = d*scale_j*q - dmin*min_j. Each group of 64
    # elements uses 32 bytes: low nibbles are sub-block 2g, high nibbles 2g+1.
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 144)
    d = _f16(blk[:, 0:2].tobytes())
    dmin = _f16(blk[:, 2:4].tobytes())
    sc = blk[:, 4:16].astype(np.int32)
    qs = blk[:, 16:]
    out = np.empty((blk.shape[0], 256), dtype=np.float32)
    for g in range(4):
        q = qs[:, 32 * g:32 * g + 32]
        for h, nib in ((0, q & 0x0F), (1, q >> 4)):
            j = 2 * g + h
            s, m = _k4_scale_min(sc, j)
            out[:, 32 * j:32 * j + 32] = ((d * s)[:, None] * nib.astype(np.float32)
                                          - (dmin * m)[:, None])
    return out.reshape(-1)[:n]


def dequant_q6_k(raw, n):
    # super-block of 256: ql[128] low 4 bits, qh[64] high 2 bits, int8 scales[16]
    # (one per 16 elements), f16 d. Two halves of 128 elements; in a half, for
    # l in 0..31: elements l, l+32, l+64, l+96 take ql[l] low, ql[l+32] low,
    # ql[l] high, ql[l+32] high nibbles and qh[l] bits 0-1, 2-3, 4-5, 6-7;
    # q is offset by 32; x = d * scale[e // 16] * (q - 32).
    blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 210)
    ql = blk[:, 0:128].astype(np.int32)
    qh = blk[:, 128:192].astype(np.int32)
    scales = blk[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(blk[:, 208:210].tobytes())
    q = np.empty((blk.shape[0], 256), dtype=np.int32)
    for half in range(2):
        L = ql[:, 64 * half:64 * half + 64]
        H = qh[:, 32 * half:32 * half + 32]
        base = 128 * half
        q[:, base + 0:base + 32] = (L[:, 0:32] & 0xF) | (((H >> 0) & 3) << 4)
        q[:, base + 32:base + 64] = (L[:, 32:64] & 0xF) | (((H >> 2) & 3) << 4)
        q[:, base + 64:base + 96] = (L[:, 0:32] >> 4) | (((H >> 4) & 3) << 4)
        q[:, base + 96:base + 128] = (L[:, 32:64] >> 4) | (((H >> 6) & 3) << 4)
    q = (q - 32).astype(np.float32)
    sc = np.repeat(scales, 16, axis=1)
    return (d[:, None] * sc * q).reshape(-1)[:n]


def dequant_bf16(raw, n):
    u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return u.view(np.float32)[:n]


DEQUANT = {GGML_Q8_0: dequant_q8_0, GGML_Q4_0: dequant_q4_0, GGML_Q4_K: dequant_q4_k,
           GGML_Q6_K: dequant_q6_k, GGML_BF16: dequant_bf16}


class GGUF:
    """A parsed GGUF file: .version, .meta (dict), .tensors (name -> info)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        self.data = data
        r = Reader(memoryview(data))
        if bytes(r.take(4)) != b"GGUF":
            raise GGUFError("bad magic")
        self.version = r.scalar("<I")
        if self.version not in (2, 3):
            raise GGUFError("unsupported GGUF version %d" % self.version)
        n_tensors = r.scalar("<Q")
        n_kv = r.scalar("<Q")
        self.meta = {}
        for _ in range(n_kv):
            k = r.string()
            vt = r.scalar("<I")
            self.meta[k] = r.value(vt)
        self.tensors = {}
        for _ in range(n_tensors):
            name = r.string()
            nd = r.scalar("<I")
            ne = [r.scalar("<Q") for _ in range(nd)]
            t = r.scalar("<I")
            off = r.scalar("<Q")
            self.tensors[name] = {"ne": ne, "type": t, "offset": off}
        align = int(self.meta.get("general.alignment", 32))
        self.data_start = (r.o + align - 1) // align * align

    def has(self, name):
        return name in self.tensors

    def tensor(self, name):
        """The tensor as float32, shaped (ne[-1], ..., ne[0])."""
        ti = self.tensors[name]
        n = 1
        for x in ti["ne"]:
            n *= x
        t = ti["type"]
        if t not in BLOCK:
            raise GGUFError("tensor %s: unsupported type %s" % (name, TYPE_NAMES.get(t, t)))
        be, bb = BLOCK[t]
        nbytes = (n + be - 1) // be * bb
        start = self.data_start + ti["offset"]
        raw = self.data[start:start + nbytes]
        if len(raw) != nbytes:
            raise GGUFError("tensor %s past end of file" % name)
        if t == GGML_F32:
            v = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif t == GGML_F16:
            v = _f16(raw)
        else:
            v = DEQUANT[t](raw, n)
        return v.reshape(tuple(reversed(ti["ne"])))
