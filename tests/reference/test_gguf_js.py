#!/usr/bin/python3
"""Files ferry writes load in another GGUF tool: Hugging Face's parser.

Every file `ferry model init` writes (llama and qwen2 at every --type, shapes tiny
and small; bert tiny at f32/f16/q8_0) and every file `ferry model quantize` writes
(stories260K from ../shared, and a tiny llama f32, to every type) is read by
@huggingface/gguf (gguf-js/, pinned in gguf-js/package-lock.json, installed by
tools/deps.sh with `npm ci`), an implementation that shares nothing with ours.
For each file its view must equal `ferry model info --tensors`:
  - GGUF version, tensor and key counts, the data section's offset;
  - every metadata key with its value type and value (arrays: element type,
    length and every element);
  - every tensor's name, type id, shape (ne) and offset, in file order.
It also checks, from the other parser's numbers alone, the layout rules other
readers rely on: data offset and tensor offsets multiples of general.alignment,
tensors in the data section without overlap, the last one ending within the file.
Skips (77) when node or the npm package is not installed.
"""
import json
import os
import shutil
import subprocess
import sys

import harness as H

JS = os.path.join(H.HERE, "gguf-js")
# (elements per block, bytes per block) of the ggml types ferry writes
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 12: (256, 144),
         14: (256, 210)}


def tensor_bytes(t):
    n = 1
    for x in t["ne"]:
        n *= x
    be, bb = BLOCK[t["type_id"]]
    return n // be * bb


# ferry's value-type names (gguf_type_name) -> the short names dump.mjs prints
FERRY_TYPES = {"uint8": "u8", "int8": "i8", "uint16": "u16", "int16": "i16", "uint32": "u32",
               "int32": "i32", "float32": "f32", "bool": "bool", "string": "string",
               "array": "array", "uint64": "u64", "int64": "i64", "float64": "f64"}


def same_value(a, b):
    """Metadata values equal, floats compared as the f32/f64 they are."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == b or (a is not None and b is not None and abs(a - b) <= 1e-6 * abs(a))
    return a == b


def compare(path, js, fe):
    """Differences between the other parser's view js and ferry's fe (a list of strings)."""
    bad = []
    if "error" in js:
        return ["@huggingface/gguf refused the file: " + js["error"]]
    for k in ("version", "data_offset"):
        want = fe["gguf_version"] if k == "version" else fe["data_offset"]
        if js[k] != want:
            bad.append("%s: js %r, ferry %r" % (k, js[k], want))
    if js["tensor_count"] != fe["tensor_count"] or js["kv_count"] != len(fe["metadata"]):
        bad.append("counts: js %r/%r, ferry %r/%r" % (js["tensor_count"], js["kv_count"],
                                                      fe["tensor_count"], len(fe["metadata"])))
    if not js["little_endian"]:
        bad.append("read as big-endian")
    jm, fm = js["metadata"], fe["metadata"]
    if set(jm) != set(fm):
        bad.append("metadata keys differ: only js %s, only ferry %s" %
                   (sorted(set(jm) - set(fm)), sorted(set(fm) - set(jm))))
    for k in sorted(set(jm) & set(fm)):
        a, b = jm[k], dict(fm[k])
        b["type"] = FERRY_TYPES.get(b["type"], b["type"])
        if "elem" in b:
            b["elem"] = FERRY_TYPES.get(b["elem"], b["elem"])
        if a["type"] != b["type"] or a.get("elem") != b.get("elem") or a.get("n") != b.get("n"):
            bad.append("%s: type js %s/%s/%s, ferry %s/%s/%s" % (
                k, a["type"], a.get("elem"), a.get("n"), b["type"], b.get("elem"), b.get("n")))
        elif not same_value(a["value"], b["value"]):
            bad.append("%s: value differs" % k)
    jt, ft = js["tensors"], fe["tensors"]
    if [t["name"] for t in jt] != [t["name"] for t in ft]:
        bad.append("tensor names or order differ")
    for a, b in zip(jt, ft):
        if (a["type_id"], a["ne"], a["offset"], a["n_dims"]) != \
                (b["type_id"], b["ne"], b["offset"], len(b["ne"])):
            bad.append("tensor %s: js type %s ne %s offset %s, ferry %s %s %s" % (
                a["name"], a["type_id"], a["ne"], a["offset"], b["type_id"], b["ne"],
                b["offset"]))
    # layout, from the other parser's numbers
    align = jm.get("general.alignment", {"value": 32})["value"]
    size = os.path.getsize(path)
    if js["data_offset"] % align:
        bad.append("data offset %d not a multiple of %d" % (js["data_offset"], align))
    end = 0
    for t in sorted(jt, key=lambda t: t["offset"]):
        if t["type_id"] not in BLOCK:
            bad.append("tensor %s: type %d" % (t["name"], t["type_id"]))
            continue
        if t["offset"] % align or t["offset"] < end:
            bad.append("tensor %s: offset %d misaligned or overlapping" % (t["name"], t["offset"]))
        end = t["offset"] + tensor_bytes(t)
    if js["data_offset"] + end > size:
        bad.append("tensor data ends at %d, file has %d bytes" % (js["data_offset"] + end, size))
    return bad


def main():
    H.ferry_bin()
    node = shutil.which("node")
    if not node:
        H.skip("node is not installed (tools/deps.sh installs nodejs)")
    if not os.path.isdir(os.path.join(JS, "node_modules", "@huggingface", "gguf")):
        H.skip("@huggingface/gguf is not installed: run tools/deps.sh (npm ci in %s)" % JS)
    d = H.workdir()
    files = []
    for arch in ("llama", "qwen2"):
        for shape in ("tiny", "small"):
            for typ in ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"):
                p = os.path.join(d, "%s-%s-%s.gguf" % (arch, shape, typ))
                H.model_init(arch, shape, typ, p, seed=5)
                files.append(p)
    for typ in ("f32", "f16", "q8_0"):
        p = os.path.join(d, "bert-tiny-%s.gguf" % typ)
        H.run([H.ferry_bin(), "model", "init", "--arch", "bert", "--shape", "tiny", "--type", typ,
               "--seed", "5", "-o", p])
        files.append(p)
    srcs = [os.path.join(d, "llama-tiny-f32.gguf")]
    stories = os.path.join(H.shared(), "models", "stories260K", "stories260K.gguf")
    if os.path.exists(stories):
        srcs.append(stories)
    else:
        print("note: %s absent; quantize tested on ferry's own files only" % stories)
    for i, src in enumerate(srcs):
        for typ in ("f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"):
            p = os.path.join(d, "quantized-%d-%s.gguf" % (i, typ))
            H.run([H.ferry_bin(), "model", "quantize", src, p, typ])
            files.append(p)
    p = subprocess.run([node, os.path.join(JS, "dump.mjs")] + files, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, cwd=JS)
    if p.returncode != 0:
        raise SystemExit("node dump.mjs failed: " + p.stderr.decode(errors="replace"))
    views = [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]
    failures = 0
    for path, js in zip(files, views):
        fe = json.loads(H.run([H.ferry_bin(), "model", "info", path, "--tensors"]).stdout)
        bad = compare(path, js, fe)
        print("%-24s %3d tensors %3d keys %s" % (os.path.basename(path), len(fe["tensors"]),
                                                 len(fe["metadata"]),
                                                 "ok" if not bad else "FAIL: " + "; ".join(bad)))
        failures += bool(bad)
    if len(views) != len(files):
        print("FAIL: %d files, %d answers from the other parser" % (len(files), len(views)))
        failures += 1
    # the comparison can fail: a file with one tensor offset moved is caught
    fe = json.loads(H.run([H.ferry_bin(), "model", "info", files[0], "--tensors"]).stdout)
    fe["tensors"][1]["offset"] += 32
    caught = bool(compare(files[0], views[0], fe))
    print("a moved tensor offset is detected: %s" % ("ok" if caught else "FAIL"))
    failures += not caught
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
