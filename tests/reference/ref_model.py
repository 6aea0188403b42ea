#!/usr/bin/python3
"""Independent numpy reference for the `llama` and `qwen2` forward pass.

Shares no code with the C engine: its own GGUF reader (ref_gguf.py), weights
dequantized to float, math in float64 by default. It computes, for a token
sequence, the logits of every position (one causal pass, no KV cache), and
greedy continuations (recomputing the whole prefix each step).

The model (per layer l, x = residual stream, shape (T, dim)):
    h   = rmsnorm(x) * attn_norm                       rmsnorm(v) = v / sqrt(mean(v^2) + eps)
    q,k,v = h @ Wq^T (+bq), h @ Wk^T (+bk), h @ Wv^T (+bv)   biases: qwen2
    rope(q), rope(k) at positions 0..T-1               llama: pairs (2i, 2i+1)
                                                       qwen2: pairs (i, i + d/2) (NeoX)
    theta_i = pos / scale * base^(-2i / rope_dim)
    att = softmax(q k^T / sqrt(head_dim) + causal mask), per head, GQA: query head
          h reads KV head h // (n_head / n_kv_head)
    x  += (att v) @ Wo^T
    h   = rmsnorm(x) * ffn_norm
    x  += (silu(h @ Wgate^T) * (h @ Wup^T)) @ Wdown^T
logits = (rmsnorm(x) * output_norm) @ Wout^T, Wout = output.weight or token_embd.weight.

Option kv_f16 rounds K and V to IEEE half after RoPE, as the engine stores them;
it is what the engine's KV cache does, so it is on for comparisons.

Option act_quant emulates the engine's documented activation quantization
(src/model/kern.h): before a product with a quantized weight, each row of
activations is cut into blocks (32 elements for Q8_0/Q4_0 weights, 256 for
Q4_K/Q6_K), and each block becomes d * q with, in float32,
    amax = max |x|,  d = amax / 127,  q = round_half_even(x * (127 / amax))
(q = 0 when amax = 0). The product is then x_q @ W^T with the dequantized W, in
the reference's own precision. This is the same arithmetic as the engine's
integer block sums (sum_b d_w * d_x * sum_j q_w q_x) up to float rounding, written
from the description, not from the C code. F32/F16/BF16 weights see x unchanged.

Command line:
  ref_model.py MODEL.gguf --ids 1,2,3 [--greedy N] [--json OUT] [--f32] [--no-kv-f16]
               [--act-quant]
prints (or writes as JSON) {"ids": prompt, "logits_last": [...], "greedy": [...]}.
"""
import argparse
import json
import sys

import numpy as np

import ref_gguf


class Model:
    def __init__(self, path, dtype=np.float64, kv_f16=True, act_quant=False):
        g = ref_gguf.GGUF(path)
        self.g = g
        arch = g.meta.get("general.architecture")
        if arch not in ("llama", "qwen2"):
            raise ref_gguf.GGUFError("unsupported architecture %r" % arch)
        self.arch = arch
        m = g.meta
        self.dim = int(m[arch + ".embedding_length"])
        self.n_layer = int(m[arch + ".block_count"])
        self.n_head = int(m[arch + ".attention.head_count"])
        self.n_kv_head = int(m.get(arch + ".attention.head_count_kv", self.n_head))
        self.ffn = int(m[arch + ".feed_forward_length"])
        self.eps = float(m.get(arch + ".attention.layer_norm_rms_epsilon", 1e-5))
        self.head_dim = self.dim // self.n_head
        self.rope_dim = int(m.get(arch + ".rope.dimension_count", self.head_dim))
        self.rope_base = float(m.get(arch + ".rope.freq_base", 10000.0))
        st = m.get(arch + ".rope.scaling.type", "none")
        f = float(m.get(arch + ".rope.scaling.factor", 0.0) or 0.0)
        self.rope_scale = f if (st == "linear" and f > 0) else 1.0
        self.neox = arch == "qwen2"
        self.dtype = dtype
        self.kv_f16 = kv_f16
        self.act_quant = act_quant
        self.qblock = {}  # weight name -> activation block size (quantized weights only)

        def W(name):
            t = g.tensors[name]["type"]
            if t in (ref_gguf.GGML_Q8_0, ref_gguf.GGML_Q4_0):
                self.qblock[name] = 32
            elif t in (ref_gguf.GGML_Q4_K, ref_gguf.GGML_Q6_K):
                self.qblock[name] = 256
            return g.tensor(name).astype(dtype)

        self.tok_embd = W("token_embd.weight")            # (vocab, dim)
        self.vocab = self.tok_embd.shape[0]
        self.out_norm = W("output_norm.weight")           # (dim,)
        self.out_name = "output.weight" if g.has("output.weight") else "token_embd.weight"
        self.out = W("output.weight") if g.has("output.weight") else self.tok_embd
        self.layers = []
        for i in range(self.n_layer):
            p = "blk.%d." % i
            L = {k: W(p + k + ".weight") for k in
                 ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                  "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
            L["prefix"] = p
            for b in ("attn_q", "attn_k", "attn_v"):
                if g.has(p + b + ".bias"):
                    L[b + ".bias"] = W(p + b + ".bias")
            self.layers.append(L)

    def quant_act(self, x, block):
        """x (T, n) with each block of `block` elements replaced by d * q (see act_quant)."""
        T, n = x.shape
        xb = x.astype(np.float32).reshape(T, n // block, block)
        amax = np.abs(xb).max(axis=2, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = np.where(amax > 0, np.float32(127.0) / amax, np.float32(0.0)).astype(np.float32)
        q = np.rint(xb * inv)                                  # float32 product, half-even
        d = (amax / np.float32(127.0)).astype(np.float32)
        return (q.astype(self.dtype) * d.astype(self.dtype)).reshape(T, n)

    def mm(self, x, w, name):
        """x @ w.T, with x quantized first when emulating the engine's activation quant."""
        blk = self.qblock.get(name) if self.act_quant else None
        if blk:
            x = self.quant_act(x, blk)
        return x @ w.T

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # x: (T, n_heads, head_dim); pos: (T,)
        d = self.rope_dim
        i = np.arange(d // 2, dtype=np.float64)
        inv = self.rope_base ** (-2.0 * i / d)
        ang = (pos.astype(np.float64)[:, None] / self.rope_scale) * inv[None, :]  # (T, d/2)
        c = np.cos(ang)[:, None, :].astype(self.dtype)
        s = np.sin(ang)[:, None, :].astype(self.dtype)
        y = x.copy()
        if self.neox:
            a, b = x[..., 0:d // 2], x[..., d // 2:d]
            y[..., 0:d // 2] = a * c - b * s
            y[..., d // 2:d] = a * s + b * c
        else:
            a, b = x[..., 0:d:2], x[..., 1:d:2]
            y[..., 0:d:2] = a * c - b * s
            y[..., 1:d:2] = a * s + b * c
        return y

    def forward(self, ids, last_only=False, hidden=False):
        """Logits (T, vocab) for every position of ids (positions 0..T-1), or
        (1, vocab) for the last position only; with hidden, the final-norm hidden
        rows (T, dim) instead (what the output matrix multiplies)."""
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        x = self.tok_embd[ids].copy()                              # (T, dim)
        pos = np.arange(T)
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        for L in self.layers:
            h = self.rmsnorm(x, L["attn_norm"])
            P = L["prefix"]
            q = self.mm(h, L["attn_q"], P + "attn_q.weight")
            k = self.mm(h, L["attn_k"], P + "attn_k.weight")
            v = self.mm(h, L["attn_v"], P + "attn_v.weight")
            if "attn_q.bias" in L:
                q = q + L["attn_q.bias"]
                k = k + L["attn_k.bias"]
                v = v + L["attn_v.bias"]
            q = self.rope(q.reshape(T, nh, hd), pos)
            k = self.rope(k.reshape(T, nkv, hd), pos)
            v = v.reshape(T, nkv, hd)
            if self.kv_f16:
                k = k.astype(np.float16).astype(self.dtype)
                v = v.astype(np.float16).astype(self.dtype)
            out = np.empty((T, nh, hd), dtype=self.dtype)
            grp = nh // nkv
            for hh in range(nh):
                kh = k[:, hh // grp, :]
                vh = v[:, hh // grp, :]
                s = (q[:, hh, :] @ kh.T) / np.sqrt(hd) + mask
                s = s - s.max(axis=1, keepdims=True)
                p = np.exp(s)
                p = p / p.sum(axis=1, keepdims=True)
                out[:, hh, :] = p @ vh
            x = x + self.mm(out.reshape(T, nh * hd), L["attn_output"], P + "attn_output.weight")
            h = self.rmsnorm(x, L["ffn_norm"])
            gt = self.mm(h, L["ffn_gate"], P + "ffn_gate.weight")
            up = self.mm(h, L["ffn_up"], P + "ffn_up.weight")
            x = x + self.mm((gt / (1.0 + np.exp(-gt))) * up, L["ffn_down"], P + "ffn_down.weight")
        if last_only:
            x = x[-1:]
        x = self.rmsnorm(x, self.out_norm)
        if hidden:
            return x
        return self.mm(x, self.out, self.out_name)

    def embed(self, ids):
        """Decoder embedding: mean over the tokens of the final-norm hidden rows,
        scaled to unit L2 norm (what ferry embed does with a llama/qwen2 model)."""
        h = self.forward(ids, hidden=True).astype(np.float64)
        m = h.mean(axis=0)
        return m / np.linalg.norm(m)

    def greedy(self, ids, n, eos=None):
        """Greedy continuation: n new ids (stops early at eos if given)."""
        seq = list(ids)
        out = []
        for _ in range(n):
            t = int(np.argmax(self.forward(seq, last_only=True)[-1]))
            out.append(t)
            seq.append(t)
            if eos is not None and t == eos:
                break
        return out

    def detokenize(self, ids):
        """SentencePiece-style text of ids (U+2581 -> space, <0xHH> -> byte)."""
        toks = self.g.meta.get("tokenizer.ggml.tokens", [])
        types = self.g.meta.get("tokenizer.ggml.token_type", [1] * len(toks))
        b = bytearray()
        for t in ids:
            piece = toks[t]
            if types[t] == 6 and piece.startswith("<0x"):
                b.append(int(piece[3:5], 16))
            elif types[t] in (3,):
                continue
            else:
                b += piece.replace("\u2581", " ").encode("utf-8", errors="surrogateescape")
        return b.decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--ids", required=True, help="comma-separated prompt token ids")
    ap.add_argument("--greedy", type=int, default=0, help="greedy tokens to generate")
    ap.add_argument("--json", help="write the result here instead of stdout")
    ap.add_argument("--f32", action="store_true", help="compute in float32")
    ap.add_argument("--no-kv-f16", action="store_true", help="keep K/V in full precision")
    ap.add_argument("--act-quant", action="store_true",
                    help="emulate the engine's per-block activation quantization")
    a = ap.parse_args()
    m = Model(a.model, dtype=np.float32 if a.f32 else np.float64, kv_f16=not a.no_kv_f16,
              act_quant=a.act_quant)
    ids = [int(x) for x in a.ids.split(",") if x.strip()]
    res = {"ids": ids, "logits_last": m.forward(ids)[-1].tolist()}
    if a.greedy:
        res["greedy"] = m.greedy(ids, a.greedy)
        res["text"] = m.detokenize(res["greedy"])
    s = json.dumps(res)
    if a.json:
        with open(a.json, "w") as f:
            f.write(s)
    else:
        sys.stdout.write(s + "\n")


if __name__ == "__main__":
    main()
