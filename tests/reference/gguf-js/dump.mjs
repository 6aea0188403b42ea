// Reads GGUF files with Hugging Face's GGUF parser (@huggingface/gguf, pinned in
// package-lock.json; installed by tools/deps.sh with `npm ci`) and prints, per
// file, one JSON line: what that parser sees (version, metadata with value types,
// tensor infos, data offset) or {"path", "error"} when it refuses the file.
// test_gguf_js.py compares this with `ferry model info --tensors`.
//
//   node dump.mjs FILE.gguf...
import { gguf, GGUFValueType } from "@huggingface/gguf";

const TYPE_NAMES = {
  [GGUFValueType.UINT8]: "u8", [GGUFValueType.INT8]: "i8", [GGUFValueType.UINT16]: "u16",
  [GGUFValueType.INT16]: "i16", [GGUFValueType.UINT32]: "u32", [GGUFValueType.INT32]: "i32",
  [GGUFValueType.FLOAT32]: "f32", [GGUFValueType.BOOL]: "bool", [GGUFValueType.STRING]: "string",
  [GGUFValueType.ARRAY]: "array", [GGUFValueType.UINT64]: "u64", [GGUFValueType.INT64]: "i64",
  [GGUFValueType.FLOAT64]: "f64",
};

// BigInts become numbers when exact, else decimal strings.
function plain(v) {
  if (typeof v === "bigint")
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

for (const path of process.argv.slice(2)) {
  try {
    const r = await gguf(path, { allowLocalFile: true, typedMetadata: true });
    const meta = {};
    for (const [k, tv] of Object.entries(r.typedMetadata)) {
      if (k === "version" || k === "tensor_count" || k === "kv_count") continue; // header fields
      const m = { type: TYPE_NAMES[tv.type] ?? String(tv.type), value: plain(tv.value) };
      if (tv.type === GGUFValueType.ARRAY) {
        m.elem = TYPE_NAMES[tv.subType] ?? String(tv.subType);
        m.n = tv.value.length;
      }
      meta[k] = m;
    }
    const tensors = r.tensorInfos.map((t) => ({
      name: t.name, n_dims: t.n_dims, ne: t.shape.map(plain), type_id: t.dtype,
      offset: plain(t.offset),
    }));
    console.log(JSON.stringify({
      path, version: plain(r.metadata.version), tensor_count: plain(r.metadata.tensor_count),
      kv_count: plain(r.metadata.kv_count), metadata: meta, tensors,
      data_offset: plain(r.tensorDataOffset), little_endian: r.littleEndian,
    }));
  } catch (err) {
    console.log(JSON.stringify({ path, error: String(err && err.message ? err.message : err) }));
  }
}
