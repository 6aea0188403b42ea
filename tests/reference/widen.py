"""stories260K made K-quant-able: the same trained llama, written 4x wider.

stories260K (../shared) has hidden size 64, 8 heads of 8, 4 KV heads, FFN 172:
no row is a multiple of 256, so Q4_K and Q6_K fall back to Q4_0/Q8_0 on it. widen()
writes an F32 GGUF that computes the same function with hidden 256, 8 heads of 32,
4 KV heads of 32 and FFN 512, by zero padding (the residual stream is zero beyond
dimension 64; head h's 8 real dimensions sit at 32h..32h+7; FFN units past 172
get zero weights and contribute silu(0)*0 = 0):
  - RMSNorm over 256 dimensions of a stream that is zero past 64 divides by
    sqrt(mean64/4 + eps'), so eps' = eps/4 and the norm weights are halved;
  - attention scores are divided by sqrt(32) instead of sqrt(8), so Wq is doubled;
  - RoPE keeps rope.dimension_count 8: it rotates the 8 real dimensions of each
    head with the original frequencies and leaves the zeros alone.
`ferry model quantize` then gives real Q4_K/Q6_K files of a model with peaked
(trained) logits. Everything here is written from the GGUF format description
and the llama equations in ref_model.py; it shares no code with ferry.
"""
import struct

import numpy as np

import ref_gguf

D2, HD2, F2 = 256, 32, 512


def _skip_value(b, o, vt):
    """Offset just past a value of type vt starting at o."""
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if vt in fixed:
        return o + fixed[vt]
    if vt == 8:
        n = struct.unpack_from("<Q", b, o)[0]
        return o + 8 + n
    if vt == 9:
        et, n = struct.unpack_from("<IQ", b, o)
        o += 12
        if et in fixed:
            return o + n * fixed[et]
        for _ in range(n):
            o = _skip_value(b, o, et)
        return o
    raise ref_gguf.GGUFError("value type %d" % vt)


def _raw_kvs(data):
    """[(key, raw bytes of the whole key/value record)] in file order."""
    o = 24
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    out = []
    for _ in range(n_kv):
        start = o
        n = struct.unpack_from("<Q", data, o)[0]
        key = bytes(data[o + 8:o + 8 + n]).decode()
        o += 8 + n
        vt = struct.unpack_from("<I", data, o)[0]
        o = _skip_value(data, o + 4, vt)
        out.append((key, bytes(data[start:o])))
    return out


def _kv(key, fmt_type, value):
    k = key.encode()
    if fmt_type == "u32":
        return struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, value)
    if fmt_type == "f32":
        return struct.pack("<Q", len(k)) + k + struct.pack("<If", 6, value)
    v = value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(v)) + v


def widen(src, dst):
    g = ref_gguf.GGUF(src)
    m = g.meta
    D, F = int(m["llama.embedding_length"]), int(m["llama.feed_forward_length"])
    H, KVH = int(m["llama.attention.head_count"]), int(m.get("llama.attention.head_count_kv", 0) or
                                                        m["llama.attention.head_count"])
    L = int(m["llama.block_count"])
    hd = D // H
    eps = float(m.get("llama.attention.layer_norm_rms_epsilon", 1e-5))
    assert D <= D2 and F <= F2 and hd <= HD2 and H * HD2 == D2, "model too wide to widen"
    assert int(m.get("llama.rope.dimension_count", hd)) == hd
    T = {}

    def pad(a, rows, cols, rmap=None, cmap=None):
        out = np.zeros((rows, cols), dtype=np.float32)
        ri = np.arange(a.shape[0]) if rmap is None else rmap
        ci = np.arange(a.shape[1]) if cmap is None else cmap
        out[np.ix_(ri, ci)] = a
        return out

    def head_map(n_heads):  # real dims of head h -> h*32 + i
        return np.array([h * HD2 + i for h in range(n_heads) for i in range(hd)])

    def vec(a, n):
        out = np.zeros(n, dtype=np.float32)
        out[:a.shape[0]] = a
        return out

    for name in g.tensors:
        w = g.tensor(name).astype(np.float32)
        if name in ("token_embd.weight", "output.weight"):
            T[name] = pad(w, w.shape[0], D2)
        elif name.endswith("_norm.weight"):
            T[name] = vec(w / 2, D2)
        elif name.endswith("attn_q.weight"):
            T[name] = pad(2 * w, H * HD2, D2, rmap=head_map(H))
        elif name.endswith(("attn_k.weight", "attn_v.weight")):
            T[name] = pad(w, KVH * HD2, D2, rmap=head_map(KVH))
        elif name.endswith("attn_output.weight"):
            T[name] = pad(w, D2, H * HD2, cmap=head_map(H))
        elif name.endswith(("ffn_gate.weight", "ffn_up.weight")):
            T[name] = pad(w, F2, D2)
        elif name.endswith("ffn_down.weight"):
            T[name] = pad(w, D2, F2)
        else:
            raise ref_gguf.GGUFError("widen: unexpected tensor %s" % name)
    assert len(T) == 3 + 9 * L or len(T) == 2 + 9 * L
    change = {"llama.embedding_length": _kv("llama.embedding_length", "u32", D2),
              "llama.feed_forward_length": _kv("llama.feed_forward_length", "u32", F2),
              "llama.attention.layer_norm_rms_epsilon":
                  _kv("llama.attention.layer_norm_rms_epsilon", "f32", eps / 4),
              "general.name": _kv("general.name", "str", "stories260K-widened-256"),
              "general.file_type": _kv("general.file_type", "u32", 0)}
    kvs = []
    for key, raw in _raw_kvs(g.data):
        if key == "general.alignment":
            continue  # written with the default alignment
        kvs.append(change.pop(key, raw))
    kvs.extend(change.values())
    infos, blobs, off = [], [], 0
    for name, a in T.items():
        raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        nb = name.encode()
        ne = list(reversed(a.shape))
        infos.append(struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(ne)) +
                     b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", 0, off))
        blobs.append(raw + b"\0" * ((-len(raw)) % 32))
        off += len(blobs[-1])
    head = b"GGUF" + struct.pack("<IQQ", 3, len(T), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % 32)
    with open(dst, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
