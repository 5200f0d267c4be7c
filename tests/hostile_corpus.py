"""The hostile-input corpus (issue 13): over 200 inputs that an attacker or a broken upload could hand the bot,
each with the outcome it must get. Everything is generated here, into a scratch folder: nothing binary is
committed.

Families:
  safetensors  weight files: truncated, huge or lying headers, bad offsets, dtypes and shapes, NaN/Inf weights
  config       configs (and tokenizer files) claiming impossible or huge sizes beside valid weights
  repo         pickle-only and remote-code repos, shard indexes and pipelines that point elsewhere, odd paths
  text         repo ids, card text, trigger tokens and comments: markup, mentions, control and bidi characters
  webhook      forged, replayed, malformed and oversized deliveries to `clip-audit serve`
  cli          every command given a broken database, settings file or argument

tests/test_hostile_inputs.py runs every case (tests/hostile_runs.py says how each is run and judged);
`python tests/hostile_corpus.py --report docs/hostile-inputs.md` runs them all and rewrites the summary.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from hub_fixtures import BOT_USER, MERGES, VOCAB

from bot.errors import EXIT_ERROR, EXIT_NOTHING_SCANNABLE, EXIT_USAGE

# A repo's files: relative path -> bytes, or a callable that makes the entry at that path (links, folders, and
# files whose bytes name where they are, like a pickle that would leave a marker beside itself).
Files = Mapping[str, "bytes | Callable[[Path], None]"]

LOADS = -1  # in ScanCase.expect: the checkpoint is well formed and its text tower loads
REFUSED = frozenset({EXIT_ERROR})
NOTHING = frozenset({EXIT_NOTHING_SCANNABLE})
REFUSED_OR_NOTHING = frozenset({EXIT_ERROR, EXIT_NOTHING_SCANNABLE})
# Files whose existence means code from a repo ran: a pickle's __reduce__ or a repo's .py file made them.
MARKERS = ("UNPICKLED", "EXECUTED")
SECRET = "hostile-corpus-secret"
REPO = "acme/clip-hostile"


@dataclass(frozen=True)
class ScanCase:
    """A checkpoint directory (or path) given to `clip-audit scan` and to the worker's scanning child."""

    family: str
    name: str
    what: str
    files: Files
    expect: frozenset[int]           # exit codes the scan may end with; LOADS: the tower loads
    target: str = ""                 # the path scanned, inside the case's folder ("" = the folder)
    processes: tuple[str, ...] = ()  # also run as a user would: "cli" (`clip-audit scan`), "child" (the worker's)


@dataclass(frozen=True)
class TextCase:
    """Owner- or commenter-controlled text given to the renderer and the mention parser."""

    name: str
    what: str
    text: str
    repo_id: bool = False  # a would-be repo id: the renderer must refuse it instead of printing it
    family: str = "text"


@dataclass(frozen=True)
class Delivery:
    """One HTTP request to the webhook endpoint: a head (request line and headers) and the body's pieces."""

    name: str
    what: str
    head: bytes
    body: tuple[bytes, ...]
    allowed: frozenset[int]
    family: str = "webhook"
    repeat: int = 1  # pieces sent `repeat` times (a streamed body of many MiB without holding it here)
    end: bytes = b""  # sent last, once the pieces are (the end of a chunked body)


@dataclass(frozen=True)
class CliCase:
    """A command line run against broken state; `{dir}` in an argument is the case's folder."""

    name: str
    what: str
    argv: tuple[str, ...]
    files: Files
    allowed: frozenset[int]
    family: str = "cli"


# -- a tiny, valid text tower ----------------------------------------------------------------------------------

WIDTH, VOCAB_ROWS, POSITIONS, EMBED = 8, 16, 77, 8
TEXT_NUMBERS = {"vocab_size": VOCAB_ROWS, "hidden_size": WIDTH, "intermediate_size": 2 * WIDTH,
                "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": POSITIONS,
                "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}  # fmt: skip
TEXT_CONFIG = {"model_type": "clip_text_model", "architectures": ["CLIPTextModel"], **TEXT_NUMBERS}
CLIP_CONFIG = {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": EMBED,
               "text_config": TEXT_NUMBERS}  # fmt: skip
OPEN_CLIP_TEXT = {"context_length": POSITIONS, "vocab_size": VOCAB_ROWS, "width": WIDTH, "heads": 2, "layers": 1,
                  "mlp_ratio": 2.0}  # fmt: skip
SIGLIP_CONFIG = {"model_type": "siglip_text_model", "architectures": ["SiglipTextModel"], **TEXT_NUMBERS,
                 "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}  # fmt: skip
# The fields of a text tower's config that a claim can blow up, and where an open_clip config keeps them.
KEY = "final_layer_norm.bias"  # a small text tensor (WIDTH floats) the safetensors cases tamper with
EMBEDDING = "embeddings.token_embedding.weight"


@lru_cache(maxsize=None)
def text_tensors(siglip: bool = False) -> dict[str, Any]:
    """The text tower's tensors, random and small, under transformers' CLIPTextModel (or SiglipTextModel) names."""
    import torch

    from bot.encoders.tower import TextTower, TowerSpec

    spec = TowerSpec(vocab_size=VOCAB_ROWS, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_layers=1,
                     num_heads=2, max_positions=POSITIONS, causal=not siglip,
                     head_size=WIDTH if siglip else None)  # fmt: skip
    generator = torch.Generator().manual_seed(13)
    layout = TextTower(spec, device="meta").state_dict()
    return {name: torch.randn(tensor.shape, generator=generator) * 0.02 for name, tensor in layout.items()}


def safetensors_bytes(tensors: Mapping[str, Any]) -> bytes:
    from safetensors.torch import save

    return save(dict(tensors))


def changed(name: str, change: Callable[[Any], Any], *, siglip: bool = False) -> dict[str, Any]:
    """The valid tensors with one replaced by change(its copy)."""
    tensors = dict(text_tensors(siglip))
    tensors[name] = change(tensors[name].clone())
    return tensors


def split_file(blob: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + length]), blob[8 + length :]


def join_file(header: dict | bytes, data: bytes = b"", *, declared: int | None = None, pad: bytes = b"",
              lead: bytes = b"") -> bytes:  # fmt: skip
    """A safetensors file: the length field (`declared`, or the real one), the header and the data."""
    head = lead + (header if isinstance(header, bytes) else json.dumps(header).encode()) + pad
    return struct.pack("<Q", len(head) if declared is None else declared) + head + data


def valid_weights() -> bytes:
    return safetensors_bytes(text_tensors())


def edited(edit: Callable[[dict], object], *, data: Callable[[bytes], bytes] = lambda d: d) -> bytes:
    """The valid weight file with its header edited in place (`edit` changes the dict) and its data changed."""
    header, payload = split_file(valid_weights())
    edit(header)
    return join_file(header, data(payload))


def set_entry(name: str, **fields: object) -> Callable[[dict], None]:
    return lambda header: header[name].update(fields)


def clip_text_repo(*, weights: bytes | None = None, config: object = None, **extra: bytes | Callable) -> dict:
    """A transformers CLIPTextModel checkpoint (config, weights, vocab.json and merges.txt), parts replaced."""
    files: dict = {
        "config.json": _json(TEXT_CONFIG if config is None else config),
        "model.safetensors": valid_weights() if weights is None else weights,
        "vocab.json": VOCAB,
        "merges.txt": MERGES,
    }
    files.update(extra)
    return files


def clip_model_repo(*, config: object = None, vision_fill: float | None = None) -> dict:
    """A transformers CLIPModel: the text tower under "text_model.", a projection, and a vision tensor."""
    import torch

    tensors = {f"text_model.{name}": tensor for name, tensor in text_tensors().items()}
    tensors["text_projection.weight"] = torch.full((EMBED, WIDTH), 0.01)
    tensors["vision_model.embeddings.position_embedding.weight"] = torch.full((5, WIDTH), vision_fill or 0.0)
    return clip_text_repo(weights=safetensors_bytes(tensors), config=CLIP_CONFIG if config is None else config)


def open_clip_repo(*, text_cfg: Mapping | None = None, model_cfg: Mapping | None = None) -> dict:
    """An open_clip checkpoint: the same tower under open_clip's names (fused attention input projection)."""
    import torch

    from bot.encoders.load import RESBLOCK_RENAMES

    tensors = text_tensors()
    renamed = {hf: oc for oc, hf in RESBLOCK_RENAMES.items()}
    out = {"token_embedding.weight": tensors[EMBEDDING],
           "positional_embedding": tensors["embeddings.position_embedding.weight"],
           "ln_final.weight": tensors["final_layer_norm.weight"], "ln_final.bias": tensors[KEY],
           "text_projection": torch.full((WIDTH, EMBED), 0.01)}  # fmt: skip
    for kind in ("weight", "bias"):
        parts = [tensors[f"encoder.layers.0.self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")]
        out[f"transformer.resblocks.0.attn.in_proj_{kind}"] = torch.cat(parts)
        for hf, oc in renamed.items():
            out[f"transformer.resblocks.0.{oc}.{kind}"] = tensors[f"encoder.layers.0.{hf}.{kind}"]
    text = {**OPEN_CLIP_TEXT, **(text_cfg or {})}
    config = {"model_cfg": {"embed_dim": EMBED, "text_cfg": text, **(model_cfg or {})}}
    return {"open_clip_config.json": _json(config), "open_clip_model.safetensors": safetensors_bytes(out),
            "vocab.json": VOCAB, "merges.txt": MERGES}  # fmt: skip


def diffusers_repo(index: object, **encoder: bytes | Callable) -> dict:
    """A diffusers pipeline whose model_index.json is `index`, with a valid text_encoder/ and tokenizer/."""
    files = {"model_index.json": _json(index), "tokenizer/vocab.json": VOCAB, "tokenizer/merges.txt": MERGES}
    files.update({f"text_encoder/{name}": content for name, content in clip_text_repo(**encoder).items()
                  if name in ("config.json", "model.safetensors")})  # fmt: skip
    return files


def siglip_repo(*, spiece: bytes | None, config: object = None) -> dict:
    files = {"config.json": _json(SIGLIP_CONFIG if config is None else config),
             "model.safetensors": safetensors_bytes(text_tensors(siglip=True))}  # fmt: skip
    if spiece is not None:
        files["spiece.model"] = spiece
    return files


def _json(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


# -- what must never run ---------------------------------------------------------------------------------------


class _LeavesMarker:
    """Pickled as a call to Path.touch(marker): unpickling it, and only that, creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def marker_pickle(path: Path) -> None:
    """A pickle at `path` that would create UNPICKLED beside it when loaded (torch.load, pickle.load)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state_dict": _LeavesMarker(path.parent / "UNPICKLED")}, protocol=4))


CUSTOM_CODE = b"from pathlib import Path\nPath(__file__).with_name('EXECUTED').touch()\n"


def _link(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    return make


def _folder(path: Path) -> None:
    path.mkdir(parents=True)


# -- the scan cases --------------------------------------------------------------------------------------------


def _weights(name: str, what: str, weights: bytes, expect: frozenset[int] = REFUSED) -> ScanCase:
    return ScanCase("safetensors", name, what, clip_text_repo(weights=weights), expect)


def safetensors_cases() -> list[ScanCase]:
    import torch

    valid = valid_weights()
    header, data = split_file(valid)
    real = len(valid) - 8 - len(data)
    cases = [
        _weights("empty-file", "zero-length model.safetensors", b""),
        *[_weights(f"short-{n}", f"{n} bytes: too short for the length field", valid[:n]) for n in (1, 4, 7)],
        _weights("length-zero", "header length 0, nothing after it", join_file(b"", declared=0)),
        _weights("length-2-pow-63", "header length 2^63", join_file(b"{}", declared=2**63)),
        _weights("length-2-pow-64-minus-1", "header length 2^64 - 1", join_file(b"{}", declared=2**64 - 1)),
        _weights("length-4-gib", "header length claiming 4 GiB", join_file(b"{}", declared=4 * 2**30)),
        _weights("length-over-limit", "header length just over the 25 MB header limit",
                 join_file(b"{}", declared=25_000_001)),
        _weights("length-past-file", "header length one past the end of the file", join_file(b"{}", declared=3)),
        _weights("length-whole-file", "header length covering the data too",
                 struct.pack("<Q", len(valid) - 8) + valid[8:]),
        _weights("length-short-by-one", "header length one short (the JSON is cut)",
                 join_file(valid[8 : 8 + real], data, declared=real - 1)),
        _weights("length-long-by-one", "header length one long (the data starts a byte late)",
                 struct.pack("<Q", real + 1) + valid[8:]),
        *[_weights(f"truncated-{where}", f"valid file cut {what}", valid[:cut]) for where, what, cut in (
            ("in-header", "inside the header", 8 + real // 2), ("after-header", "right after the header", 8 + real),
            ("in-data", "in the middle of the data", 8 + real + len(data) // 2),
            ("last-byte", "by its last byte", len(valid) - 1))],
        _weights("trailing-bytes", "bytes after the last tensor", valid + bytes(16)),
        # the header is not (one) JSON object
        *[_weights(f"header-{name}", f"header is {what}", join_file(raw)) for name, what, raw in (
            ("open-brace", "a lone '{'", b"{"), ("bad-json", "invalid JSON", b'{"a": }'),
            ("binary", "random binary", bytes(range(256))), ("latin1", "not UTF-8", b'{"\xff\xfe": 1}'),
            ("bom", "JSON after a UTF-8 byte-order mark", b"\xef\xbb\xbf" + json.dumps(header).encode()),
            ("list", "a JSON list", b"[1, 2, 3]"), ("string", "a JSON string", b'"weights"'),
            ("number", "a JSON number", b"42"), ("null", "JSON null", b"null"), ("true", "JSON true", b"true"),
            ("two-objects", "two JSON objects", json.dumps(header).encode() + b"{}"),
            ("deep-arrays", "arrays nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
            ("deep-objects", "objects nested 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
            ("huge-integer", "an offset with 5,000 digits", b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": '
                                                             b"[0, 1" + b"0" * 5000 + b"]}}"),
            ("nan-literal", "NaN in place of an entry", b'{"x": NaN}'),
            ("duplicate-name", "the same tensor named twice (JSON's last-wins would hide the first)",
             b'{"' + KEY.encode() + b'": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}, "' + KEY.encode()
             + b'": {"dtype": "F32", "shape": [8], "data_offsets": [32, 64]}}'),
        )],
        _weights("header-nul-padding", "header padded with NUL bytes (the format allows spaces only)",
                 join_file(header, data, pad=b"\0" * 8)),
        _weights("header-leading-spaces", "spaces before the header's opening brace",
                 join_file(header, data, lead=b"    ")),
        _weights("header-space-padding", "header padded with spaces to 8 bytes, as the format allows",
                 join_file(header, data, pad=b" " * (8 - real % 8 or 8)), expect=frozenset({LOADS})),
        _weights("header-huge-padding", "header padded with 1 MB of spaces", join_file(header, data, pad=b" " * 2**20),
                 expect=frozenset({LOADS})),
        _weights("header-misordered", "entries listed out of data order (the format sorts by offset)",
                 join_file(dict(reversed(list(header.items()))), data), expect=frozenset({LOADS})),
        _weights("metadata-not-map", "__metadata__ is a list", edited(lambda h: h.update(__metadata__=[1, 2]))),
        _weights("metadata-nested", "__metadata__ holds an object",
                 edited(lambda h: h.update(__metadata__={"format": {"pt": 1}}))),
        _weights("metadata-huge", "__metadata__ of 10,000 keys (well formed)",
                 edited(lambda h: h.update(__metadata__={f"k{i}": "v" * 50 for i in range(10_000)})),
                 expect=frozenset({LOADS})),
        _weights("entry-not-object", "a tensor entry that is a string", edited(lambda h: h.update({KEY: "F32"}))),
        *[_weights(f"entry-without-{field}", f"a tensor entry without {field}",
                   edited(lambda h, f=field: h[KEY].pop(f))) for field in ("dtype", "shape", "data_offsets")],
        _weights("entry-extra-field", "a tensor entry with an unknown field (ignored by both readers)",
                 edited(set_entry(KEY, extra=1)), expect=frozenset({LOADS})),
        # dtypes
        *[_weights(f"dtype-{label}", f"dtype {value!r}", edited(set_entry(KEY, dtype=value))) for label, value in (
            ("unknown", "Q9"), ("lowercase", "f32"), ("empty", ""), ("null", None), ("number", 32), ("list", ["F32"]),
            ("f6", "F6_E2M3"))],
        _weights("dtype-lie-f16", "claims F16 over F32 bytes (twice the bytes the shape needs)",
                 edited(set_entry(KEY, dtype="F16"))),
        _weights("dtype-lie-f64", "claims F64 over F32 bytes (half the bytes the shape needs)",
                 edited(set_entry(KEY, dtype="F64"))),
        _weights("dtype-lie-f4-odd", "claims 3 four-bit values (not a whole number of bytes)",
                 join_file({"x": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2))),
        # shapes
        *[_weights(f"shape-{label}", f"shape {text}", edited(set_entry(KEY, shape=value))) for label, text, value in (
            ("negative", "[-8]", [-8]), ("negative-pair", "[-2, -4] (product 8)", [-2, -4]),
            ("huge", "[2^63]", [2**63]), ("huge-pair", "[2^40, 2^40]", [2**40, 2**40]),
            ("float", "[8.0]", [8.0]), ("string", '["8"]', ["8"]), ("null", "null", None), ("object", "{}", {}),
            ("zero", "[0] over 32 bytes", [0]), ("bool", "[true] (one element, as JSON reads it in Python)", [True]))],
        _weights("shape-overflow-zero", "shape [2^62, 2^62, 0]: no bytes, an overflowing element count",
                 edited(lambda h: h.update(x={"dtype": "F32", "shape": [2**62, 2**62, 0], "data_offsets": [0, 0]}))),
        _weights("shape-65-dims", "a text tensor with 65 dimensions of 1 (torch allows 64)",
                 edited(set_entry(KEY, shape=[1] * 64 + [8]))),
        _weights("shape-100k-dims", "a text tensor shape listing 100,000 ones",
                 edited(set_entry(KEY, shape=[1] * 100_000 + [8]))),
        # offsets
        *[_weights(f"offsets-{label}", f"data_offsets {text}", edited(lambda h, v=value: _offsets(h, v)))
          for label, text, value in (
              ("negative", "that start below zero", lambda s, e: [-32, e - s - 32]),
              ("reversed", "end before start", lambda s, e: [e, s]),
              ("float", "as floats", lambda s, e: [float(s), float(e)]),
              ("strings", "as strings", lambda s, e: [str(s), str(e)]),
              ("three", "with three numbers", lambda s, e: [s, e, e]), ("one", "with one number", lambda s, e: [s]),
              ("object", "as an object", lambda s, e: {"start": s, "end": e}),
              ("overlap", "overlapping the tensor before", lambda s, e: [s - 4, e - 4]),
              ("gap", "leaving a gap", lambda s, e: [s + 4, e + 4]),
              ("beyond-file", "past the end of the file", lambda s, e: [s + 10**6, e + 10**6]),
              ("2-pow-64", "around 2^64", lambda s, e: [2**64, 2**64 + e - s]),
              ("empty-span", "[0, 0] for 8 floats", lambda s, e: [0, 0]))],
        _weights("offsets-same-span", "two tensors of one size claiming the same bytes",
                 edited(lambda h: h[KEY].update(data_offsets=h["final_layer_norm.weight"]["data_offsets"]))),
        _weights("offsets-swapped", "two tensors of one size with their byte ranges swapped (well formed)",
                 edited(_swap_offsets), expect=frozenset({LOADS})),
        # weights that are not numbers a tower can compute with
        _weights("nan-weights", "NaN in the final layer norm", safetensors_bytes(changed(KEY, _fill(float("nan"))))),
        _weights("inf-weights", "+Inf in the token embedding",
                 safetensors_bytes(changed(EMBEDDING, _fill(float("inf"))))),
        _weights("minus-inf-weights", "-Inf in one attention weight", safetensors_bytes(changed(
            "encoder.layers.0.self_attn.q_proj.weight", _at_first(float("-inf"))))),
        _weights("nan-one-value", "a single NaN among the token embeddings",
                 safetensors_bytes(changed(EMBEDDING, _at_first(float("nan"))))),
        _weights("nan-f16", "NaN in half precision", safetensors_bytes(
            changed(KEY, lambda t: _fill(float("nan"))(t).half()))),
        _weights("nan-bf16", "NaN in bfloat16", safetensors_bytes(
            changed(KEY, lambda t: _fill(float("nan"))(t).bfloat16()))),
        _weights("all-nan", "every tensor NaN", safetensors_bytes(
            {name: _fill(float("nan"))(tensor.clone()) for name, tensor in text_tensors().items()})),
        *[_weights(f"weights-{dtype}", f"the token embedding stored as {dtype}", safetensors_bytes(
            changed(EMBEDDING, lambda t, d=dtype: t.to(getattr(torch, d)))), expect=expect)
          for dtype, expect in (("int64", REFUSED), ("bool", REFUSED), ("uint8", REFUSED), ("int8", REFUSED),
                                ("float16", frozenset({LOADS})), ("bfloat16", frozenset({LOADS})),
                                ("float64", frozenset({LOADS})), ("float8_e4m3fn", frozenset({LOADS})))],
        _weights("weights-complex", "the final layer norm stored as complex numbers",
                 safetensors_bytes(changed(KEY, lambda t: t.to(torch.complex64)))),
        _weights("valid", "the valid tower these cases tamper with", valid, expect=frozenset({LOADS})),
    ]
    return cases


def _offsets(header: dict, make: Callable[[int, int], object]) -> None:
    start, end = header[KEY]["data_offsets"]
    header[KEY]["data_offsets"] = make(start, end)


def _swap_offsets(header: dict) -> None:
    a, b = header[KEY], header["final_layer_norm.weight"]
    a["data_offsets"], b["data_offsets"] = b["data_offsets"], a["data_offsets"]


def _fill(value: float) -> Callable[[Any], Any]:
    return lambda tensor: tensor.fill_(value)


def _at_first(value: float) -> Callable[[Any], Any]:
    def change(tensor):
        tensor.view(-1)[0] = value
        return tensor

    return change


# -- configs claiming what the weights are not -------------------------------------------------------------------


def config_cases() -> list[ScanCase]:
    def claim(name: str, what: str, change: Mapping) -> ScanCase:
        return ScanCase("config", name, what, clip_text_repo(config={**TEXT_CONFIG, **change}), REFUSED_OR_NOTHING)

    numbers = [
        ("hidden-2-pow-20", "hidden_size 2^20", {"hidden_size": 2**20}),
        ("hidden-negative", "hidden_size -8", {"hidden_size": -8}),
        ("hidden-zero", "hidden_size 0", {"hidden_size": 0}),
        ("hidden-float", "hidden_size 8.5", {"hidden_size": 8.5}),
        ("hidden-string", 'hidden_size "8"', {"hidden_size": "8"}),
        ("hidden-null", "hidden_size null", {"hidden_size": None}),
        ("hidden-bool", "hidden_size true", {"hidden_size": True}),
        ("hidden-double", "hidden_size 16, twice the weights'", {"hidden_size": 16}),
        ("vocab-10-pow-10", "vocab_size 10^10", {"vocab_size": 10**10}),
        ("vocab-negative", "vocab_size -1", {"vocab_size": -1}),
        ("vocab-zero", "vocab_size 0", {"vocab_size": 0}),
        ("vocab-huge-digits", "vocab_size with 400 digits", {"vocab_size": 10**400}),
        ("layers-10-pow-6", "num_hidden_layers 10^6", {"num_hidden_layers": 10**6}),
        ("layers-200k", "num_hidden_layers 200,000 (under the dimension cap)", {"num_hidden_layers": 200_000}),
        ("layers-seven", "num_hidden_layers 7 beside 1 layer of weights", {"num_hidden_layers": 7}),
        ("layers-zero", "num_hidden_layers 0", {"num_hidden_layers": 0}),
        ("layers-negative", "num_hidden_layers -1", {"num_hidden_layers": -1}),
        ("heads-three", "8 wide with 3 heads", {"num_attention_heads": 3}),
        ("heads-zero", "0 heads", {"num_attention_heads": 0}),
        ("heads-10-pow-9", "10^9 heads", {"num_attention_heads": 10**9}),
        ("intermediate-10-pow-9", "intermediate_size 10^9", {"intermediate_size": 10**9}),
        ("intermediate-negative", "intermediate_size -16", {"intermediate_size": -16}),
        ("positions-10-pow-9", "max_position_embeddings 10^9", {"max_position_embeddings": 10**9}),
        ("positions-negative", "max_position_embeddings -77", {"max_position_embeddings": -77}),
        ("positions-string", 'max_position_embeddings "77"', {"max_position_embeddings": "77"}),
        ("positions-longclip", "248 positions (a LongCLIP) beside 77 of weights", {"max_position_embeddings": 248}),
        ("eps-nan", "layer_norm_eps NaN", {"layer_norm_eps": float("nan")}),
        ("eps-negative", "layer_norm_eps -1", {"layer_norm_eps": -1.0}),
        ("eps-ten", "layer_norm_eps 10", {"layer_norm_eps": 10.0}),
        ("activation-code", 'hidden_act "os.system"', {"hidden_act": "os.system"}),
        ("activation-list", "hidden_act as a list", {"hidden_act": ["gelu"]}),
    ]
    cases = [claim(name, what, change) for name, what, change in numbers]
    infinite = _json(TEXT_CONFIG).replace(b'"max_position_embeddings": 77', b'"max_position_embeddings": 1e400')
    cases += [
        ScanCase("config", "positions-infinite", "max_position_embeddings 1e400 (infinity once parsed)",
                 clip_text_repo(config=infinite), REFUSED_OR_NOTHING),
        ScanCase("config", "model-type-list", "model_type as a list", clip_text_repo(
            config={**TEXT_CONFIG, "model_type": ["clip_text_model"]}), NOTHING),
        ScanCase("config", "model-type-number", "model_type 7", clip_text_repo(config={**TEXT_CONFIG, "model_type": 7}),
                 NOTHING),
        ScanCase("config", "model-type-missing", "no model_type", clip_text_repo(
            config={k: v for k, v in TEXT_CONFIG.items() if k != "model_type"}), NOTHING),
        ScanCase("config", "model-type-vision", "a clip_vision_model config", clip_text_repo(
            config={**TEXT_CONFIG, "model_type": "clip_vision_model"}), NOTHING),
        ScanCase("config", "architectures-number", "architectures 5 (loads: the model_type decides)",
                 clip_text_repo(config={**TEXT_CONFIG, "architectures": 5}), frozenset({LOADS})),
        ScanCase("config", "architectures-objects", "architectures holding objects (loads: the model_type decides)",
                 clip_text_repo(config={**TEXT_CONFIG, "architectures": [{"a": 1}]}), frozenset({LOADS})),
        ScanCase("config", "config-not-json", "config.json is not JSON", clip_text_repo(config=b"{model_type: clip"),
                 NOTHING),
        ScanCase("config", "config-list", "config.json is a list", clip_text_repo(config=[TEXT_CONFIG]), NOTHING),
        ScanCase("config", "config-empty", "config.json is empty", clip_text_repo(config=b""), NOTHING),
        ScanCase("config", "config-bom", "config.json starts with a byte-order mark",
                 clip_text_repo(config=b"\xef\xbb\xbf" + _json(TEXT_CONFIG)), NOTHING),
        ScanCase("config", "config-latin1", "config.json is not UTF-8", clip_text_repo(config=b'{"\xe9": 1}'), NOTHING),
        ScanCase("config", "config-deep", "config.json nested 100,000 deep",
                 clip_text_repo(config=b"[" * 100_000 + b"]" * 100_000), NOTHING),
        ScanCase("config", "config-huge-integer", "a 5,000-digit number in config.json",
                 clip_text_repo(config=b'{"model_type": "clip_text_model", "hidden_size": 1' + b"0" * 5000 + b"}"),
                 NOTHING),
        # a CLIPModel's text_config and projection
        ScanCase("config", "clip-text-config-string", "CLIPModel whose text_config is a string",
                 clip_model_repo(config={**CLIP_CONFIG, "text_config": "abc"}), REFUSED_OR_NOTHING),
        ScanCase("config", "clip-text-config-list", "CLIPModel whose text_config is a list",
                 clip_model_repo(config={**CLIP_CONFIG, "text_config": [1, 2]}), REFUSED_OR_NOTHING),
        ScanCase("config", "clip-text-hidden-2-pow-20", "CLIPModel text_config.hidden_size 2^20",
                 clip_model_repo(config={**CLIP_CONFIG, "text_config": {**TEXT_NUMBERS, "hidden_size": 2**20}}),
                 REFUSED_OR_NOTHING),
        ScanCase("config", "clip-projection-10-pow-9", "CLIPModel projection_dim 10^9 (an nn.Linear of 32 GB)",
                 clip_model_repo(config={**CLIP_CONFIG, "projection_dim": 10**9}), REFUSED),
        ScanCase("config", "clip-projection-negative", "CLIPModel projection_dim -5",
                 clip_model_repo(config={**CLIP_CONFIG, "projection_dim": -5}), REFUSED_OR_NOTHING),
        ScanCase("config", "clip-projection-double", "CLIPModel projection_dim 16 beside an 8-wide projection",
                 clip_model_repo(config={**CLIP_CONFIG, "projection_dim": 16}), REFUSED),
        ScanCase("config", "clip-model-valid", "the valid CLIPModel these cases change", clip_model_repo(),
                 frozenset({LOADS})),
        ScanCase("config", "clip-vision-nan", "NaN only in the vision tower, which is never read",
                 clip_model_repo(vision_fill=float("nan")), frozenset({LOADS})),
        # open_clip configs
        *[ScanCase("config", f"open-clip-{name}", f"open_clip {what}", open_clip_repo(**change), expect)
          for name, what, change, expect in (
              ("embed-10-pow-9", "embed_dim 10^9", {"model_cfg": {"embed_dim": 10**9}}, REFUSED),
              ("embed-negative", "embed_dim -1", {"model_cfg": {"embed_dim": -1}}, REFUSED),
              ("width-2-pow-20", "width 2^20", {"text_cfg": {"width": 2**20}}, REFUSED_OR_NOTHING),
              ("layers-10-pow-6", "layers 10^6", {"text_cfg": {"layers": 10**6}}, REFUSED_OR_NOTHING),
              ("heads-zero", "heads 0", {"text_cfg": {"heads": 0}}, REFUSED_OR_NOTHING),
              ("vocab-10-pow-10", "vocab_size 10^10", {"text_cfg": {"vocab_size": 10**10}}, REFUSED_OR_NOTHING),
              ("context-string", 'context_length "x"', {"text_cfg": {"context_length": "x"}}, REFUSED_OR_NOTHING),
              ("context-10-pow-9", "context_length 10^9", {"text_cfg": {"context_length": 10**9}}, REFUSED_OR_NOTHING),
              ("mlp-ratio-nan", "mlp_ratio NaN", {"text_cfg": {"mlp_ratio": float("nan")}}, REFUSED_OR_NOTHING),
              ("mlp-ratio-huge", "mlp_ratio 1e300", {"text_cfg": {"mlp_ratio": 1e300}}, REFUSED_OR_NOTHING),
              ("width-string", 'width "8"', {"text_cfg": {"width": "8"}}, REFUSED_OR_NOTHING),
              ("norm-kwargs-list", "norm_kwargs as a list", {"text_cfg": {"norm_kwargs": [1]}}, REFUSED_OR_NOTHING),
              ("unknown-option", "an option open_clip does not know", {"text_cfg": {"evil": 1}}, REFUSED_OR_NOTHING),
              ("text-cfg-list", "text_cfg as a list", {"model_cfg": {"text_cfg": [1]}}, NOTHING),
              ("valid", "the valid open_clip checkpoint these cases change", {}, frozenset({LOADS})))],
        # tokenizer files beside valid weights and config
        *[ScanCase("config", f"tokenizer-{name}", what, clip_text_repo(**files), expect)
          for name, what, files, expect in (
              ("vocab-not-json", "vocab.json is not JSON", {"vocab.json": b"{not json"}, REFUSED),
              ("vocab-list", "vocab.json is a list", {"vocab.json": b"[1, 2]"}, REFUSED),
              ("vocab-negative-id", "vocab.json gives a token id -5", {"vocab.json": _json(
                  {"<|startoftext|>": 0, "<|endoftext|>": -5})}, REFUSED),
              ("vocab-id-past-rows", "vocab.json gives end-of-text id 10^9 (past the embedding's 16 rows)",
               {"vocab.json": _json({"<|startoftext|>": 0, "<|endoftext|>": 10**9})}, REFUSED),
              ("vocab-too-many", "vocab.json with 100 tokens beside 16 embedding rows",
               {"vocab.json": _json({f"t{i}": i for i in range(100)})}, REFUSED),
              ("vocab-deep", "vocab.json nested 100,000 deep", {"vocab.json": b"[" * 100_000 + b"]" * 100_000},
               REFUSED),
              ("merges-three-words", "merges.txt lines of three words", {"merges.txt": b"#version: 0.2\na b c\nx\n"},
               REFUSED),
              ("merges-binary", "merges.txt is not UTF-8", {"merges.txt": b"\xff\xfe\x00\x01"}, REFUSED))],
        ScanCase("config", "siglip-spiece-garbage", "SigLIP with a spiece.model of random bytes",
                 siglip_repo(spiece=bytes(range(256)) * 4), REFUSED),
        ScanCase("config", "siglip-spiece-empty", "SigLIP with an empty spiece.model", siglip_repo(spiece=b""),
                 REFUSED),
        ScanCase("config", "siglip-no-spiece", "SigLIP without spiece.model", siglip_repo(spiece=None), NOTHING),
    ]
    return cases


# -- whole repos: pickles, custom code, indexes and paths that lead elsewhere -----------------------------------


def repo_cases() -> list[ScanCase]:
    def repo(name: str, what: str, files: Files, expect: frozenset[int], target: str = "") -> ScanCase:
        return ScanCase("repo", name, what, files, expect, target=target)

    text = clip_text_repo()
    no_weights = {name: content for name, content in text.items() if name != "model.safetensors"}
    open_clip_config = {"open_clip_config.json": open_clip_repo()["open_clip_config.json"]}
    shards = {"model-00001-of-00002.safetensors": valid_weights(), "model-00002-of-00002.safetensors": valid_weights()}
    cases = [
        *[repo(f"pickle-only-{label}", f"only {name}, a pickle that would leave a marker{what}",
               {**extra, name: marker_pickle}, NOTHING)
          for label, name, what, extra in (
              ("transformers", "pytorch_model.bin", ", beside config and tokenizer", no_weights),
              ("ckpt", "model.ckpt", "", {}), ("pt", "model.pt", "", {}), ("pth", "weights.pth", "", {}),
              ("pkl", "model.pkl", "", {}), ("pickle", "model.pickle", "", {}), ("upper-case", "MODEL.BIN", "", {}),
              ("open-clip", "open_clip_pytorch_model.bin", ", beside open_clip_config.json", open_clip_config),
              ("both-configs", "pytorch_model.bin", ", beside config.json and open_clip_config.json",
               {**open_clip_config, "config.json": _json(TEXT_CONFIG)}))],
        repo("pickle-only-diffusers", "a pipeline whose text encoder is only a pickle",
             {"model_index.json": _json({"text_encoder": ["transformers", "CLIPTextModel"]}),
              "text_encoder/config.json": _json(TEXT_CONFIG), "text_encoder/pytorch_model.bin": marker_pickle},
             NOTHING),
        repo("pickle-beside-safetensors", "a marker pickle beside valid safetensors: only the safetensors is read",
             {**text, "pytorch_model.bin": marker_pickle, "model.ckpt": marker_pickle}, frozenset({LOADS})),
        repo("pickle-named-safetensors", "a marker pickle saved as model.safetensors",
             {**no_weights, "model.safetensors": marker_pickle}, REFUSED),
        repo("remote-code-model-type", "a custom model_type with auto_map and its modeling .py",
             clip_text_repo(config={**TEXT_CONFIG, "model_type": "evil_clip",
                                    "auto_map": {"AutoModel": "modeling_evil.EvilModel"}},
                            **{"modeling_evil.py": CUSTOM_CODE, "configuration_evil.py": CUSTOM_CODE}), NOTHING),
        repo("remote-code-standard-type", "auto_map and custom classes over a standard model_type (loads, code "
             "never imported)", clip_text_repo(config={**TEXT_CONFIG, "architectures": ["EvilCLIP"],
                                                       "auto_map": {"AutoModel": "modeling_evil.EvilCLIP"}},
                                               **{"modeling_evil.py": CUSTOM_CODE}), frozenset({LOADS})),
        repo("remote-code-tokenizer", "tokenizer_config.json naming a custom tokenizer class and its code (loads, "
             "code never imported)", clip_text_repo(**{
                 "tokenizer_config.json": _json({"tokenizer_class": "EvilTokenizer",
                                                 "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer",
                                                                                None]}}),
                 "tokenization_evil.py": CUSTOM_CODE}), frozenset({LOADS})),
        repo("remote-code-trust-flag", "config asking for trust_remote_code (loads, nothing run)",
             clip_text_repo(config={**TEXT_CONFIG, "trust_remote_code": True}, **{"__init__.py": CUSTOM_CODE}),
             frozenset({LOADS})),
        repo("remote-code-only", "only .py files", {"modeling_evil.py": CUSTOM_CODE, "setup.py": CUSTOM_CODE}, NOTHING),
        repo("card-yaml-python-tag", "README front matter with a python/object YAML tag (loads, nothing run)",
             {**text, "README.md": b"---\nbase_model: !!python/object/apply:os.system ['touch EXECUTED']\n---\n"},
             frozenset({LOADS})),
        repo("card-not-utf8", "README that is not UTF-8 (loads)", {**text, "README.md": b"---\nbase_model: \xff\n---"},
             frozenset({LOADS})),
        repo("card-huge-yaml", "README with 100,000 YAML keys (loads)",
             {**text, "README.md": b"---\n" + b"".join(b"k%d: v\n" % i for i in range(100_000)) + b"---\n"},
             frozenset({LOADS})),
        # what the folder is
        repo("empty-folder", "an empty folder", {}, NOTHING),
        repo("only-readme", "only a README", {"README.md": b"# a model"}, NOTHING),
        repo("only-tokenizer", "only tokenizer files", {"vocab.json": VOCAB, "merges.txt": MERGES}, NOTHING),
        repo("config-no-weights", "a config and no weights", {"config.json": _json(TEXT_CONFIG)}, NOTHING),
        repo("weights-no-config", "safetensors weights and no config", {"model.safetensors": valid_weights()},
             NOTHING),
        repo("path-is-file", "the path given is a weight file, not a folder", text,
             frozenset({EXIT_NOTHING_SCANNABLE, EXIT_USAGE}), target="model.safetensors"),
        repo("path-missing", "the path given does not exist", {}, frozenset({EXIT_USAGE}), target="missing"),
        repo("weights-folder", "model.safetensors is a folder", {**no_weights, "model.safetensors": _folder}, NOTHING),
        repo("weights-dangling-link", "model.safetensors links to nothing",
             {**no_weights, "model.safetensors": _link("nowhere.safetensors")}, NOTHING),
        repo("weights-link-loop", "model.safetensors links to itself",
             {**no_weights, "model.safetensors": _link("model.safetensors")}, NOTHING),
        repo("weights-link-device", "model.safetensors links to /dev/zero",
             {**no_weights, "model.safetensors": _link("/dev/zero")}, NOTHING),
        # sharded checkpoints
        *[repo(f"shards-{name}", f"a shard index {what}", {
            **no_weights, **shards, "model.safetensors.index.json": index}, expect)
          for name, what, index, expect in (
              ("name-number", "naming shard 5", _json({"weight_map": {KEY: 5}}), REFUSED),
              ("name-up", "naming ../ a shard outside the folder", _json({"weight_map": {KEY: "../x.safetensors"}}),
               REFUSED),
              ("name-absolute", "naming /etc/passwd", _json({"weight_map": {KEY: "/etc/passwd"}}), REFUSED),
              ("name-nul", "naming a shard with a NUL byte", _json({"weight_map": {KEY: "a\u0000b"}}), REFUSED),
              ("name-missing", "naming a shard that is not there", _json({"weight_map": {KEY: "gone.safetensors"}}),
               REFUSED),
              ("map-list", "whose weight_map is a list", _json({"weight_map": [1]}), REFUSED),
              ("map-missing", "without weight_map", _json({"metadata": {}}), REFUSED),
              ("not-json", "that is not JSON", b"{weight_map", REFUSED),
              ("not-utf8", "that is not UTF-8", b'{"weight_map": {"\xff": "a"}}', REFUSED),
              ("deep", "nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, REFUSED),
              ("duplicate-tensor", "whose two shards both hold every tensor", _json(
                  {"weight_map": {KEY: "model-00001-of-00002.safetensors", "x": "model-00002-of-00002.safetensors"}}),
               REFUSED))],
        # diffusers pipelines whose components lead elsewhere
        repo("diffusers-traversal", "model_index.json naming text_encoder/../../outside (a valid tower beside the "
             "repo)", {**diffusers_repo({"text_encoder/../../outside": ["transformers", "CLIPTextModel"]}),
                       **{f"../outside/{k}": v for k, v in text.items()}}, NOTHING),
        repo("diffusers-nul-name", "a component name with a NUL byte",
             diffusers_repo({"text_encoder\u0000": ["transformers", "CLIPTextModel"]}), NOTHING),
        repo("diffusers-junk-spec", "components that are not [library, class] pairs",
             diffusers_repo({"text_encoder": [["x"], {"a": 1}], "unet": "UNet"}), NOTHING),
        repo("diffusers-index-list", "model_index.json is a list", diffusers_repo([1, 2]), NOTHING),
        repo("diffusers-huge-claim", "a pipeline whose text encoder config claims 10^6 layers",
             diffusers_repo({"text_encoder": ["transformers", "CLIPTextModel"]},
                            config={**TEXT_CONFIG, "num_hidden_layers": 10**6}), REFUSED_OR_NOTHING),
        repo("diffusers-valid", "the valid pipeline these cases change",
             diffusers_repo({"text_encoder": ["transformers", "CLIPTextModel"]}), frozenset({LOADS})),
    ]
    return cases


# The scan cases also run the way a user or the worker meets them, each in a real process (seconds apiece on a busy
# machine, so a subset): `clip-audit scan`, and the worker's scanning child.
THROUGH_CLI = frozenset({"nan-weights", "layers-10-pow-6", "pickle-only-transformers", "path-missing"})
THROUGH_CHILD = frozenset({
    "length-2-pow-63", "header-deep-arrays", "nan-weights", "inf-weights", "vocab-10-pow-10", "layers-10-pow-6",
    "positions-10-pow-9", "clip-projection-10-pow-9", "tokenizer-vocab-id-past-rows", "siglip-spiece-garbage",
    "pickle-only-transformers", "remote-code-model-type", "shards-name-up", "diffusers-traversal"})  # fmt: skip


def scan_cases() -> list[ScanCase]:
    cases = [*safetensors_cases(), *config_cases(), *repo_cases()]
    return [replace(case, processes=tuple(route for route, names in (("cli", THROUGH_CLI), ("child", THROUGH_CHILD))
                                          if case.name in names)) for case in cases]  # fmt: skip


# -- text an owner or a commenter controls ---------------------------------------------------------------------


def text_cases() -> list[TextCase]:
    rlo, lri, pdi = "\u202e", "\u2066", "\u2069"
    texts = [
        ("script-tag", "a script tag", "<script>alert(1)</script>"),
        ("img-onerror", "an img tag with an onerror handler", '<img src=x onerror="alert(1)">'),
        ("html-comment", "an HTML comment that hides the rest", "<!-- hidden --> visible <!--"),
        ("iframe", "an iframe", '<iframe src="https://evil.example"></iframe>'),
        ("details", "a details element that would fold the report", "<details><summary>ok</summary>"),
        ("entities", "HTML entities", "&lt;b&gt; &amp; &#64;admin &#x40;root"),
        ("markdown-link", "a Markdown link", "[click here](https://evil.example/login)"),
        ("js-link", "a javascript: link", "[x](javascript:alert(1))"),
        ("image", "a tracking image", "![pixel](http://evil.example/p.png)"),
        ("reference-link", "a reference-style link", "[a][1]\n\n[1]: http://evil.example"),
        ("autolink", "an autolink", "<https://evil.example>"),
        ("bare-url", "a bare URL the Hub would link", "see https://evil.example/x and www.evil.example"),
        ("mention", "a mention of another user", "@julien-c please look"),
        ("mention-bot", "a mention of the bot itself", f"@{BOT_USER} scan"),
        ("mention-email", "an address that contains a mention", "mail admin@huggingface.co"),
        ("discussion-ref", "a reference to another discussion", "see #1 and acme/other#2"),
        ("heading", "a heading", "# Verdict: clean"),
        ("list-item", "a list item", "- [x] approved"),
        ("numbered", "a numbered item", "1. clean"),
        ("quote", "a quote", "> the bot says clean"),
        ("fence", "a code fence", "```\nverdict: clean\n```"),
        ("backticks", "inline code", "`clean` and ``x``"),
        ("table-break", "pipes that would split a table cell", "a | b || c |"),
        ("emphasis", "emphasis and strikethrough", "**bold** _it_ ~~gone~~"),
        ("math", "math", "$$\\begin{evil}$$"),
        ("newlines", "line breaks that start new blocks", "one\n\n# two\r\n- three\rfour"),
        ("nul", "a NUL byte", "before\x00after"),
        ("escape-codes", "terminal escape codes", "\x1b[31mred\x1b[0m\x07"),
        ("bidi-override", "a right-to-left override", f"abc{rlo}fed.exe"),
        ("bidi-isolates", "bidi isolates", f"x{lri}hidden{pdi}y"),
        ("zero-width", "zero-width characters", "cle\u200ban\u200d\ufeff"),
        ("line-separator", "unicode line and paragraph separators", "one\u2028two\u2029three"),
        ("private-use", "private-use and unassigned code points", "\ue000\U0010fffd\U000e0001"),
        ("combining", "a stack of combining marks", "e" + "\u0301" * 500),
        ("homoglyph", "Cyrillic look-alikes", "сlеаn"),
        ("emoji", "emoji and a flag", "🏴‍☠️ ✅"),
        ("huge", "1 MB of text", "A" * 1_000_000),
        ("huge-markup", "100,000 link openers", "[" * 100_000),
        ("huge-mentions", "100,000 mentions", "@someone " * 100_000),
        ("backtick-ats", "an unclosed backtick before a million @", "`" + "@" * 1_000_000),
        ("template", "Jinja syntax", "{{ config }} {% raw %}"),
        ("reply-marker", "a forged reply marker", "<!-- clip-audit reply to c1 -->"),
        ("surrogate-escape", "a lone surrogate", "x\ud800y"),
    ]
    repo_ids = [
        ("repo-traversal", "../../etc/passwd"), ("repo-three-parts", "owner/name/extra"), ("repo-empty", ""),
        ("repo-no-owner", "name"), ("repo-leading-space", " acme/x"), ("repo-newline", "acme/x\n# injected"),
        ("repo-script", "<script>/x"), ("repo-mention", "@alice/x"), ("repo-long", "acme/" + "b" * 200),
        ("repo-bidi", f"acme/x{rlo}"), ("repo-url", "https://evil.example/a"), ("repo-dots", "acme/.."),
        ("repo-double-dot", "acme/a..b"), ("repo-markdown", "acme/[x](y)"), ("repo-pipe", "acme/a|b"),
        ("repo-space", "acme/a b"), ("repo-nul", "acme/a\x00"), ("repo-unicode", "acme/mоdel"),
        ("repo-trailing-dot", "acme/model."), ("repo-backslash", "acme\\model"),
    ]
    return [TextCase(name, what, text) for name, what, text in texts] + [
        TextCase(name, f"repo id {text!r:.40}", text, repo_id=True) for name, text in repo_ids]


# -- webhook deliveries ----------------------------------------------------------------------------------------


def payload(comment_id: str, **changes: object) -> dict:
    """A Hub v3 comment payload for REPO; `changes` replace blocks or dotted fields ("discussion.num")."""
    body: dict = {
        "event": {"action": "create", "scope": "discussion.comment"},
        "repo": {"type": "model", "name": REPO, "id": "r-1"},
        "discussion": {"num": 1, "isPullRequest": False, "title": "t", "status": "open"},
        "comment": {"id": comment_id, "author": {"id": "u-eve"}, "content": f"@{BOT_USER} help", "hidden": False},
        "webhook": {"id": "w-1", "version": 3},
    }
    for path, value in changes.items():
        *parents, last = path.split(".")
        block = body
        for part in parents:
            block = block[part]
        block[last] = value
    return body


def request(body: bytes | None, *, secret: str | None = SECRET, method: str = "POST", path: str = "/webhook",
            headers: Mapping[str, str] | None = None, length: str | None = None) -> bytes:  # fmt: skip
    """A request head: Content-Length is the body's unless `length` says otherwise (or the body is chunked)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "Content-Type: application/json"]
    if secret is not None:
        lines.append(f"X-Webhook-Secret: {secret}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def deliveries() -> list[Delivery]:
    ok, ignored, malformed = frozenset({202}), frozenset({200}), frozenset({400})

    def send(name: str, what: str, body: object, allowed: frozenset[int], **options: Any) -> Delivery:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Delivery(name, what, request(raw, **options), (raw,), allowed)

    first = payload("c-first")
    cases = [
        send("valid", "a signed comment (stored, 202)", first, ok),
        send("replayed", "the same delivery again (a duplicate, never handled twice)", first, ignored),
        send("replayed-forged", "the same delivery with a wrong secret", first, frozenset({401}), secret="wrong"),
        # forged
        *[send(f"forged-{name}", f"secret {what}", payload(f"c-forged-{name}"), frozenset({401}), secret=secret)
          for name, what, secret in (
              ("missing", "missing", None), ("empty", "empty", ""), ("wrong", "wrong", "guess"),
              ("prefix", "a prefix of the real one", SECRET[:-1]), ("longer", "the real one plus a byte", SECRET + "x"),
              ("case", "in other case", SECRET.upper()), ("huge", "of 8 KB", "s" * 8192),
              ("inner-space", "with a space inside", f"{SECRET[:4]} {SECRET[4:]}"),
              ("latin1", "with non-ASCII bytes", "s\xe9cret"))],
        send("forged-other-header", "the secret under another header name", payload("c-forged-header"),
             frozenset({401}), secret=None, headers={"X-Hub-Signature": SECRET}),
        # malformed JSON
        *[send(f"json-{name}", what, raw, malformed) for name, what, raw in (
            ("empty", "an empty body", b""), ("garbage", "not JSON", b"{not json"), ("array", "a JSON array", b"[]"),
            ("number", "a JSON number", b"42"), ("string", "a JSON string", b'"x"'), ("null", "JSON null", b"null"),
            ("latin1", "not UTF-8", b"\xff\xfe{"), ("deep-arrays", "arrays nested 50,000 deep",
                                                  b"[" * 50_000 + b"]" * 50_000),
            ("deep-objects", "objects nested 50,000 deep", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
            ("deep-in-field", "a payload with 40 levels in an unread field",
             json.dumps(payload("c-deep", extra=json.loads("[" * 40 + "]" * 40))).encode()),
            ("nan", "NaN where the discussion number goes",
             json.dumps(payload("c-nan")).replace('"num": 1', '"num": NaN').encode()),
            ("huge-number", "a 5,000-digit discussion number",
             json.dumps(payload("c-digits")).replace('"num": 1', '"num": 1' + "0" * 5000).encode()))],
        send("json-utf16", "a valid payload encoded as UTF-16 (JSON allows it)",
             json.dumps(payload("c-utf16")).encode("utf-16"), frozenset({202, 400})),
        # wrong shapes and values
        *[send(f"field-{name}", f"{path} = {value!r:.40}", payload(f"c-field-{name}", **{path: value}), malformed)
          for name, path, value in (
              ("scope-list", "event.scope", ["discussion.comment"]), ("scope-object", "event.scope", {"a": 1}),
              ("scope-number", "event.scope", 5), ("event-string", "event", "discussion.comment"),
              ("event-null", "event", None), ("num-negative", "discussion.num", -3), ("num-zero", "discussion.num", 0),
              ("num-string", "discussion.num", "3"), ("num-bool", "discussion.num", True),
              ("num-float", "discussion.num", 3.5), ("num-huge", "discussion.num", 10**30),
              ("num-past-int32", "discussion.num", 2**31),
              ("discussion-null", "discussion", None), ("discussion-list", "discussion", [1]),
              ("repo-list", "repo", ["model"]), ("repo-name-number", "repo.name", 7),
              ("repo-traversal", "repo.name", "../../etc/passwd"), ("repo-three-parts", "repo.name", "a/b/c"),
              ("repo-empty", "repo.name", ""), ("repo-script", "repo.name", "<script>/x"),
              ("repo-newline", "repo.name", "acme/x\n"), ("repo-bidi", "repo.name", "acme/x\u202e"),
              ("repo-long", "repo.name", "acme/" + "b" * 500), ("author-string", "comment.author", "eve"),
              ("author-id-number", "comment.author.id", 5), ("content-number", "comment.content", 42),
              ("content-null", "comment.content", None), ("content-list", "comment.content", ["a"]),
              ("hidden-string", "comment.hidden", "no"), ("comment-id-number", "comment.id", 1),
              ("comment-list", "comment", [1]), ("pr-string", "discussion.isPullRequest", "false"))],
        send("field-missing-comment-id", "a comment without its id",
             {**payload("x"), "comment": {"author": {"id": "u"}, "content": "c"}}, malformed),
        send("field-missing-repo", "no repo block", {k: v for k, v in payload("c-norepo").items() if k != "repo"},
             malformed),
        send("content-surrogate", "a comment holding half a surrogate pair",
             json.dumps(payload("c-surrogate")).replace(f"@{BOT_USER} help", "x\\ud800y").encode(), malformed),
        send("comment-id-surrogate", "a comment id holding half a surrogate pair",
             json.dumps(payload("c-x")).replace("c-x", "c\\udfff").encode(), malformed),
        # not for the bot: answered, ignored
        send("scope-repo", "a repo event", payload("c-repo", **{"event.scope": "repo.content"}), ignored),
        send("action-update", "an edited comment", payload("c-upd", **{"event.action": "update"}), ignored),
        send("dataset-repo", "a comment on a dataset", payload("c-ds", **{"repo.type": "dataset"}), ignored),
        send("hidden-comment", "a hidden comment", payload("c-hidden", **{"comment.hidden": True}), ignored),
        # hostile but well formed: stored as they are, for the mention parser and renderer
        *[send(f"content-{name}", f"a comment holding {what}", payload(f"c-content-{name}", **{
            "comment.content": text}), ok) for name, what, text in (
            ("script", "a script tag", f"@{BOT_USER} scan <script>alert(1)</script>"),
            ("mentions", "mentions of other users", f"@{BOT_USER} scan @alice @bob"),
            ("bidi", "bidi controls", f"@{BOT_USER} scan \u202emain"),
            ("control", "control characters and a NUL", f"@{BOT_USER} scan \x00\x1b[2J\x07"),
            ("revision-traversal", "a revision that climbs", f"@{BOT_USER} scan ../../refs/heads/x"),
            ("backtick-ats", "an unclosed backtick before 900,000 @", "`" + "@" * 900_000),
            ("many-mentions", "90,000 mentions of the bot", f"@{BOT_USER} " * 90_000),
            ("near-cap", "1,000,000 characters (under the 1 MiB cap)", "x" * 1_000_000))],
        # transport: methods, lengths, sizes
        Delivery("method-get", "GET /webhook", request(None, method="GET"), (), frozenset({405})),
        Delivery("method-put", "PUT /webhook", request(b"{}", method="PUT"), (b"{}",), frozenset({405})),
        Delivery("path-other", "POST to another path", request(b"{}", path="/webhook/../admin"), (b"{}",),
                 frozenset({404})),
        Delivery("length-declared-5-gb", "Content-Length 5 GB, a few bytes sent", request(b"{}", length="5000000000"),
                 (b"{}",), frozenset({413})),
        Delivery("length-not-number", "Content-Length abc", request(b"{}", length="abc"), (b"{}",), malformed),
        Delivery("length-negative", "Content-Length -5", request(b"{}", length="-5"), (b"{}",), malformed),
        Delivery("length-and-chunked", "both Content-Length and chunked",
                 request(None, length="2", headers={"Transfer-Encoding": "chunked"}), (_chunk(b"{}"), b"0\r\n\r\n"),
                 malformed),
        send("oversized-2-mib", "a 2 MiB body with its length", b" " * (2 * 2**20), frozenset({413})),
        Delivery("chunked-valid", "a valid payload, chunked, no Content-Length",
                 request(None, headers={"Transfer-Encoding": "chunked"}),
                 (_chunk(json.dumps(payload("c-chunked")).encode()), b"0\r\n\r\n"), ok),
        Delivery("chunked-over-cap", "8 MiB chunked, no Content-Length",
                 request(None, headers={"Transfer-Encoding": "chunked"}), (_chunk(b" " * 65536),), frozenset({413}),
                 repeat=128, end=b"0\r\n\r\n"),
        Delivery("chunked-200-mib", "200 MiB chunked, no Content-Length (memory must stay bounded)",
                 request(None, headers={"Transfer-Encoding": "chunked"}), (_chunk(b" " * 2**20),), frozenset({413}),
                 repeat=200, end=b"0\r\n\r\n"),
        Delivery("chunked-bad-size", "a chunk size that is not hex", request(None, headers={
            "Transfer-Encoding": "chunked"}), (b"zz\r\n{}\r\n0\r\n\r\n",), malformed),
        send("after-all", "a signed comment once all of the above are answered (the server is still up)",
             payload("c-last"), ok),
    ]
    return cases


# -- every command against broken state ------------------------------------------------------------------------

NOT_SQLITE = b"this is not an SQLite database" * 10


def cli_cases() -> list[CliCase]:
    config_error = frozenset({EXIT_USAGE})

    def case(name: str, what: str, argv: str, files: Files, allowed: frozenset[int] = REFUSED) -> CliCase:
        return CliCase(name, what, tuple(argv.split()), files, allowed)

    return [
        case("status-db-not-sqlite", "status on a file that is not a database", "status --db-path {dir}/state.db",
             {"state.db": NOT_SQLITE}),
        case("status-db-folder", "status on a folder named like the database", "status --db-path {dir}/state.db",
             {"state.db": _folder}, frozenset({EXIT_ERROR, EXIT_USAGE})),
        case("status-db-foreign", "status on an SQLite database of another program (it adds its tables)",
             "status --db-path {dir}/state.db", {"state.db": _foreign_database}, frozenset({0, EXIT_ERROR})),
        case("status-toml-broken", "status with a settings file that is not TOML", "status --config {dir}/c.toml",
             {"c.toml": b"x = [\n"}, config_error),
        case("status-toml-types", "status with settings of the wrong type", "status --config {dir}/c.toml",
             {"c.toml": b'max_attempts = "many"\n'}, config_error),
        case("status-toml-token", "status with a token in the settings file", "status --config {dir}/c.toml",
             {"c.toml": b'token = "hf_x"\n'}, config_error),
        case("status-toml-binary", "status with a binary settings file", "status --config {dir}/c.toml",
             {"c.toml": bytes(range(256))}, config_error),
        case("status-toml-missing", "status with a settings file that is not there", "status --config {dir}/none.toml",
             {}, config_error),
        case("worker-db-not-sqlite", "worker --burst on a broken database",
             "worker --burst --db-path {dir}/state.db --endpoint http://127.0.0.1:9", {"state.db": NOT_SQLITE}),
        case("serve-no-secret", "serve without a webhook secret", "serve --db-path {dir}/state.db", {}, config_error),
        case("site-build-db-not-sqlite", "site build from a broken database",
             "site build --db-path {dir}/state.db --out {dir}/site", {"state.db": NOT_SQLITE}),
        case("site-build-out-is-file", "site build into a path that is a file",
             "site build --db-path {dir}/state.db --out {dir}/site", {"site": b"a file", "state.db": _empty_store},
             frozenset({EXIT_USAGE})),
        case("anchors-add-bad-id", "anchors add with an impossible repo id", "anchors add ../../etc/x", {},
             frozenset({EXIT_ERROR, EXIT_USAGE})),
        case("anchors-list-broken-file", "anchors list with a broken anchors file",
             "anchors list --config {dir}/c.toml", {"c.toml": _settings_naming("a.json"), "a.json": b"{broken"},
             frozenset({EXIT_ERROR, EXIT_USAGE})),
        case("calibrate-unknown-base", "calibrate a base that is not registered", "calibrate --base nobody/nothing", {},
             frozenset({EXIT_ERROR, EXIT_USAGE})),
        case("scan-anchor-garbage", "scan a valid tower against an --anchor that is garbage",
             "scan {dir}/suspect --anchor {dir}/anchor --quiet",
             {**{f"suspect/{k}": v for k, v in clip_text_repo().items()}, "anchor/model.safetensors": b"\0" * 64},
             REFUSED_OR_NOTHING),
        case("scan-subfolder-up", "scan with --subfolder climbing out", "scan {dir} --subfolder ../../etc --quiet", {},
             frozenset({EXIT_NOTHING_SCANNABLE, EXIT_USAGE})),
        case("watch-db-not-sqlite", "watch --once on a broken database",
             "watch --once --db-path {dir}/state.db --endpoint http://127.0.0.1:9", {"state.db": NOT_SQLITE}),
        case("zoo-list-cache-is-file", "zoo list with a file as the cache folder", "zoo list --cache-dir {dir}/f",
             {"f": b"x"}, frozenset({0})),
        case("bench-without-stage", "bench detect without its required stage", "bench detect", {}, config_error),
        case("site-serve-bad-port", "site serve on port 70000", "site serve --dir {dir} --port 70000", {},
             config_error),
        case("config-unknown", "config with an unknown subcommand", "config show", {}, config_error),
        case("unknown-command", "a command that does not exist", "exfiltrate --all", {}, config_error),
    ]


def _empty_store(path: Path) -> None:
    from bot.state.store import Store

    with Store(path):
        pass


def _settings_naming(anchors: str) -> Callable[[Path], None]:
    """A settings file whose anchors_file is `anchors` beside it."""
    return lambda path: path.write_text(f"anchors_file = {json.dumps(str(path.parent / anchors))}\n")


def _foreign_database(path: Path) -> None:
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        connection.execute("INSERT INTO meta VALUES ('schema_version', 'banana')")
    connection.close()


# -- all of it -------------------------------------------------------------------------------------------------


def all_cases() -> dict[str, list]:
    """Every case by family."""
    scans = scan_cases()
    families: dict[str, list] = {}
    for case in scans:
        families.setdefault(case.family, []).append(case)
    families["text"] = text_cases()
    families["webhook"] = deliveries()
    families["cli"] = cli_cases()
    return families


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, required=True, help="write the summary (docs/hostile-inputs.md) here")
    args = parser.parse_args(argv)
    from hostile_runs import run_everything, write_report

    outcomes = run_everything()
    write_report(outcomes, args.report)
    failed = [o for o in outcomes if o.problems]
    print(f"{len({(o.family, o.name) for o in outcomes})} cases in {len(outcomes)} runs, {len(failed)} with problems; "
          f"summary written to {args.report}")
    for outcome in failed:
        print(f"  {outcome.family}/{outcome.name}: {'; '.join(outcome.problems)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
