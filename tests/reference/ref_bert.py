#!/usr/bin/python3
"""Independent numpy reference for `bert` embedding models (sentence embeddings).

Shares no code with the C engine: GGUF through ref_gguf.py, weights dequantized
to float64, every step written from the BERT paper / Hugging Face BertModel
definitions rather than from ferry's source.

For a token sequence ids (normally [CLS] ... [SEP]) of length T:
    x = LN(tok_embd[ids] + position_embd[0..T) + token_types[0])      (T, dim)
    per layer (post-norm):
        q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv
        a = concat_h softmax(q_h k_h^T / sqrt(head_dim)) v_h            (no mask: one text)
        x = LN_attn_output_norm(x + a Wo^T + bo)
        x = LN_layer_output_norm(x + gelu(x Wup^T + bup) Wdown^T + bdown)
    gelu(z) = z/2 (1 + erf(z/sqrt 2))
    LN(z) = (z - mean) / sqrt(var + eps) * w + b   (per row, biased variance)
pooled = mean over the T rows (bert.pooling_type 1, the default) or row 0 (2, CLS);
embedding = pooled / |pooled|.

Command line: ref_bert.py MODEL.gguf --ids 101,7592,102 [--ids ...] prints one
embedding per line.
"""
import argparse
import math

import numpy as np

import ref_gguf

_erf = np.vectorize(math.erf)


def layernorm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(z):
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))


class Bert:
    def __init__(self, path):
        g = ref_gguf.GGUF(path)
        m = g.meta
        if m.get("general.architecture") != "bert":
            raise ref_gguf.GGUFError("not a bert model: %r" % m.get("general.architecture"))
        self.dim = int(m["bert.embedding_length"])
        self.n_layer = int(m["bert.block_count"])
        self.n_head = int(m["bert.attention.head_count"])
        self.eps = float(m.get("bert.attention.layer_norm_epsilon", 1e-12))
        self.pooling = int(m.get("bert.pooling_type", 1))
        self.head_dim = self.dim // self.n_head

        def T(name):
            return g.tensor(name).astype(np.float64)

        self.tok = T("token_embd.weight")           # (vocab, dim)
        self.pos = T("position_embd.weight")        # (n_ctx, dim)
        self.typ = T("token_types.weight")          # (n_types, dim)
        self.ln0 = (T("token_embd_norm.weight"), T("token_embd_norm.bias"))
        self.layers = []
        for i in range(self.n_layer):
            p = "blk.%d." % i
            self.layers.append({k: T(p + k) for k in (
                "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias",
                "attn_v.weight", "attn_v.bias", "attn_output.weight", "attn_output.bias",
                "attn_output_norm.weight", "attn_output_norm.bias",
                "ffn_up.weight", "ffn_up.bias", "ffn_down.weight", "ffn_down.bias",
                "layer_output_norm.weight", "layer_output_norm.bias")})

    def hidden(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        T_ = len(ids)
        x = self.tok[ids] + self.pos[:T_] + self.typ[0]
        x = layernorm(x, self.ln0[0], self.ln0[1], self.eps)
        H, hd = self.n_head, self.head_dim
        for L in self.layers:
            q = x @ L["attn_q.weight"].T + L["attn_q.bias"]
            k = x @ L["attn_k.weight"].T + L["attn_k.bias"]
            v = x @ L["attn_v.weight"].T + L["attn_v.bias"]
            q = q.reshape(T_, H, hd).transpose(1, 0, 2)
            k = k.reshape(T_, H, hd).transpose(1, 0, 2)
            v = v.reshape(T_, H, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)       # (H, T, T)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(T_, self.dim)
            x = layernorm(x + a @ L["attn_output.weight"].T + L["attn_output.bias"],
                          L["attn_output_norm.weight"], L["attn_output_norm.bias"], self.eps)
            h = gelu(x @ L["ffn_up.weight"].T + L["ffn_up.bias"])
            x = layernorm(x + h @ L["ffn_down.weight"].T + L["ffn_down.bias"],
                          L["layer_output_norm.weight"], L["layer_output_norm.bias"], self.eps)
        return x

    def embed(self, ids):
        x = self.hidden(ids)
        v = x[0] if self.pooling == 2 else x.mean(axis=0)
        n = np.linalg.norm(v)
        return v / n if n > 0 else v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ids", action="append", required=True)
    a = ap.parse_args()
    m = Bert(a.model)
    for s in a.ids:
        e = m.embed([int(x) for x in s.split(",")])
        print(" ".join("%.9g" % x for x in e))


if __name__ == "__main__":
    main()
