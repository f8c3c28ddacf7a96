"""The YAML pipeline model: validation messages, canonical hashing, applying chains with masks."""

from __future__ import annotations

import hashlib
import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from medspark.preprocess import augment as aug
from medspark.steps import (
    SEGMENT_KINDS,
    STEPS,
    AugmentConfig,
    Pipeline,
    PipelineConfigError,
    ProcessingConfig,
    StepError,
    list_steps,
)
from medspark.steps.docs import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "preprocess.md"


def ellipse(shape, center, axes):
    r, c = np.ogrid[: shape[0], : shape[1]]
    return ((r - center[0]) / axes[0]) ** 2 + ((c - center[1]) / axes[1]) ** 2 <= 1


@pytest.fixture(scope="module")
def chest():
    """512x512 int16 chest slice in HU (body, bone ring, two lungs, table, noise) and lungs."""
    shape = (512, 512)
    img = np.full(shape, -1000.0)
    img[ellipse(shape, (256, 256), (150, 200))] = 40
    ring = ellipse(shape, (256, 256), (140, 190)) & ~ellipse(shape, (256, 256), (132, 182))
    img[ring] = 700
    lungs = ellipse(shape, (250, 170), (90, 60)) | ellipse(shape, (250, 342), (90, 60))
    img[lungs] = -850
    img[420:428, 80:432] = 200
    img += np.random.default_rng(0).normal(0, 20, shape)
    return img.astype(np.int16), lungs


TYPICAL = [
    {"step": "window", "preset": "lung"},
    {"step": "resize", "size": 256},
    {"step": "clahe", "clip_limit": 2.0},
    {"step": "gaussian", "sigma": 1.0},
]


# ---------------------------------------------------------------------------- validation

def test_entry_forms_are_equivalent():
    a = Pipeline.from_config([{"step": "window", "preset": "lung"}, {"step": "fill_holes"}])
    b = Pipeline.from_config([{"window": {"preset": "lung"}}, "fill_holes"])
    c = Pipeline.from_config(yaml.safe_load("- window: {preset: lung}\n- fill_holes:\n"))
    assert a == b == c and a.hash() == b.hash() == c.hash()
    assert a.names == ["window", "fill_holes"] and len(a) == 2


def test_unknown_step_names_index_and_suggests():
    with pytest.raises(PipelineConfigError) as e:
        Pipeline.from_config([{"step": "window", "preset": "lung"}, {"step": "resise", "size": 2}])
    msg = str(e.value)
    assert "pipeline step 1 (resise): unknown step 'resise'" in msg
    assert "did you mean 'resize'?" in msg and "known steps:" in msg


def test_unknown_parameter_names_step_and_parameter():
    with pytest.raises(PipelineConfigError) as e:
        Pipeline.from_config([{"step": "resize", "size": 256}, {"step": "window", "centre": 40}])
    msg = str(e.value)
    assert "pipeline step 1 (window): parameter 'centre': unknown parameter" in msg
    assert "allowed: preset, center, width, out_range" in msg


@pytest.mark.parametrize(
    ("entry", "fragments"),
    [
        ({"step": "gaussian", "sigma": "big"}, ["(gaussian)", "'sigma'", "valid number", "'big'"]),
        ({"step": "gaussian", "sigma": "2"}, ["(gaussian)", "'sigma'"]),  # strict: no "2" -> 2
        ({"step": "gaussian", "sigma": -1}, ["'sigma'", "greater than 0"]),
        ({"step": "median", "size": 4}, ["(median)", "'size'", "odd"]),
        ({"step": "resize", "size": [1, 2, 3]}, ["(resize)", "'size'"]),
        ({"step": "resize"}, ["(resize)", "'size'", "required parameter is missing"]),
        ({"step": "flip", "axis": "diagonal"}, ["(flip)", "'axis'", "horizontal"]),
        ({"step": "resize", "size": 8, "keep_aspect": "yes"}, ["'keep_aspect'", "boolean"]),
        ({"step": "window", "preset": "lung", "center": 40}, ["(window)", "not both"]),
        ({"step": "window", "width": 400}, ["(window)", "preset"]),
        ({"step": "window", "preset": "lungs"}, ["(window)", "'preset'", "'lung'"]),
        ({"step": "percentile", "lower": 99, "upper": 1}, ["(percentile)", "below"]),
        ({"step": "hu_range", "preset": "fat", "lower": 0}, ["(hu_range)", "not both"]),
        ({"step": "top_k_components", "k": 0}, ["(top_k_components)", "'k'"]),
    ],
)
def test_invalid_parameters_are_reported(entry, fragments):
    with pytest.raises(PipelineConfigError) as e:
        Pipeline.from_config([entry])
    msg = str(e.value)
    assert msg.startswith("pipeline step 0 (")
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_every_problem_reported_at_once():
    with pytest.raises(PipelineConfigError) as e:
        Pipeline.from_config(
            [{"step": "nope"}, 42, {"sigma": 1}, {"step": "gaussian", "sigma": 0, "units": "cm"}]
        )
    lines = str(e.value).splitlines()
    assert lines[0].startswith("pipeline step 0 (nope): unknown step")
    assert lines[1] == "pipeline step 1: expected a mapping like {step: NAME, ...}, got int"
    assert lines[2].startswith("pipeline step 2: missing the 'step' key")
    assert lines[3].startswith("pipeline step 3 (gaussian): parameter 'sigma'")
    assert lines[4].startswith("pipeline step 3 (gaussian): parameter 'units'")


def test_config_must_be_a_list():
    with pytest.raises(PipelineConfigError, match="expected a list of steps"):
        Pipeline.from_config({"step": "window"})
    assert len(Pipeline.from_config(None)) == 0


# ---------------------------------------------------------------------------- hashing

def test_hash_stable_under_key_order_defaults_and_number_forms():
    a = Pipeline.from_config([{"step": "window", "center": 40, "width": 400},
                              {"step": "resize", "size": 256}])
    b = Pipeline.from_config([{"width": 400.0, "step": "window", "center": 40.0},
                              {"interpolation": "auto", "size": [256, 256], "step": "resize"}])
    assert a.hash() == b.hash()
    assert len(a.hash()) == 64
    assert a.hash() == hashlib.sha256(a.canonical_json().encode()).hexdigest()


def test_hash_changes_with_params_and_order():
    base = Pipeline.from_config(TYPICAL).hash()
    changed = [dict(s) for s in TYPICAL]
    changed[3]["sigma"] = 1.5
    assert Pipeline.from_config(changed).hash() != base
    assert Pipeline.from_config(TYPICAL[::-1]).hash() != base
    assert Pipeline.from_config(TYPICAL[:3]).hash() != base


def test_canonical_json_is_documented_form():
    p = Pipeline.from_config([{"step": "flip"}, {"step": "gaussian", "sigma": 2}])
    assert p.canonical_json() == (
        '{"medspark_pipeline":1,"steps":[{"axis":"horizontal","step":"flip"},'
        '{"sigma":2.0,"step":"gaussian","units":"px"}]}'
    )
    assert p.to_config() == [{"step": "flip", "axis": "horizontal"},
                             {"step": "gaussian", "sigma": 2.0, "units": "px"}]
    assert Pipeline.from_config(p.to_config()) == p


def test_pickle_roundtrip_keeps_behaviour(chest):
    img, _ = chest
    p = Pipeline.from_config(TYPICAL)
    q = pickle.loads(pickle.dumps(p))
    assert q == p and q.hash() == p.hash()
    np.testing.assert_array_equal(q.apply(img, (0.7, 0.7))[0], p.apply(img, (0.7, 0.7))[0])


# ---------------------------------------------------------------------------- applying

def test_typical_chain(chest):
    img, _ = chest
    out, spacing, mask = Pipeline.from_config(TYPICAL).apply(img, (0.7, 0.7))
    assert out.shape == (256, 256) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert spacing == pytest.approx((1.4, 1.4)) and mask is None


def test_channel_image_through_chain():
    rgb = np.random.default_rng(1).integers(0, 255, (100, 80, 3)).astype(np.uint8)
    p = Pipeline.from_config([{"step": "resize", "size": [50, 40]}, {"step": "clahe"},
                              {"step": "zscore"}, {"step": "cast", "dtype": "float32"}])
    out, spacing, _ = p.apply(rgb)
    assert out.shape == (50, 40, 3) and spacing is None


def test_lung_mask_step_then_mask_follows_geometry(chest):
    img, lungs = chest
    p = Pipeline.from_config([
        {"step": "lung_mask"},
        {"step": "window", "preset": "lung"},
        {"step": "resize", "size": 256},
        {"step": "flip", "axis": "horizontal"},
        {"step": "rotate", "angle": 90},
        {"step": "center_crop", "size": 200},
        {"step": "pad", "size": 220, "mode": "reflect"},
    ])
    assert p.makes_mask
    out, spacing, mask = p.apply(img, (0.7, 0.7))
    assert mask.dtype == np.bool_ and mask.shape == out.shape == (220, 220)
    expected = lungs[::2, ::2][:, ::-1]
    expected = np.rot90(expected)[28:228, 28:228]
    expected = np.pad(expected, 10, mode="reflect")
    agreement = (mask == expected).mean()
    assert agreement > 0.99
    # the mask marks lung pixels of the transformed image: -850 HU in the lung window
    assert float(out[mask].mean()) == pytest.approx((-850 + 1350) / 1500, abs=0.01)


def test_resample_moves_mask(chest):
    img, lungs = chest
    out, spacing, mask = Pipeline.from_config(
        [{"step": "lung_mask"}, {"step": "resample", "target_spacing": 1.4}]
    ).apply(img, (0.7, 0.7))
    assert out.shape == mask.shape == (256, 256) and spacing == pytest.approx((1.4, 1.4))
    assert (mask == lungs[::2, ::2]).mean() > 0.99


def test_within_mask_statistics_and_apply_mask(chest):
    img, _ = chest
    p = Pipeline.from_config([{"step": "lung_mask"}, {"step": "zscore", "within_mask": True},
                              {"step": "apply_mask", "fill": 0}])
    out, _, mask = p.apply(img, (0.7, 0.7))
    assert abs(float(out[mask].mean())) < 1e-3 and float(out[mask].std()) == pytest.approx(1, 1e-3)
    assert (out[~mask] == 0).all()


def test_mask_combination_and_refinement(chest):
    img, _ = chest
    spacing = (0.7, 0.7)
    body = Pipeline.from_config(["body_mask"]).apply(img, spacing)[2]
    lung = Pipeline.from_config(["lung_mask"]).apply(img, spacing)[2]
    soft = Pipeline.from_config(
        ["body_mask", {"step": "hu_range", "lower": -200, "upper": 300, "combine": "and"},
         {"step": "open", "radius": 1}, {"step": "largest_component"}]
    ).apply(img, spacing)[2]
    assert not (soft & lung).any() and (soft <= body).all() and soft.sum() > 0.3 * body.sum()
    both = Pipeline.from_config(["lung_mask", {"step": "body_mask", "combine": "or"}])
    np.testing.assert_array_equal(both.apply(img, spacing)[2], body | lung)


def test_mask_passed_in_is_transformed():
    img = np.zeros((40, 60), np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 10:30] = 255
    out, _, m = Pipeline.from_config([{"step": "resize", "size": [80, 120]}]).apply(img, None, mask)
    assert m.dtype == np.bool_ and m.sum() == 4 * 200


def test_runtime_errors_name_the_step(chest):
    img, _ = chest
    with pytest.raises(StepError, match=r"step 1 \(fill_holes\).*needs a mask") as e:
        Pipeline.from_config(["flip", "fill_holes"]).apply(img)
    assert e.value.index == 1 and e.value.step == "fill_holes"
    copy = pickle.loads(pickle.dumps(e.value))
    assert (str(copy), copy.index, copy.step) == (str(e.value), 1, "fill_holes")
    with pytest.raises(StepError, match=r"step 0 \(resample\).*spacing"):
        Pipeline.from_config([{"step": "resample", "target_spacing": 1}]).apply(img, None)
    with pytest.raises(ValueError, match="mask shape"):
        Pipeline.from_config(["flip"]).apply(img, None, np.zeros((3, 3), bool))


# minimal parameters for steps that require some; mask_op / apply_mask get a body mask first and
# gamma a window, since it refuses raw HU
REQUIRED = {
    "resize": {"size": 64}, "resample": {"target_spacing": 1.4}, "center_crop": {"size": 100},
    "crop": {"top": 10, "left": 20, "height": 300, "width": 200}, "pad": {"size": 600},
    "rotate": {"angle": 30}, "window": {"preset": "lung"}, "clip": {"lower": -100},
    "gamma": {"gamma": 2.0}, "cast": {"dtype": "int16"}, "threshold": {"lower": -500},
    "top_k_components": {"k": 2}, "hu_range": {"preset": "fat"}, "min_area": {"area": 10},
    "nl_means": {"patch_distance": 2},
}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_step_runs_on_stored_layout(chest, name):
    """Each registered step runs on a read-only (H, W, 1) int16 buffer, as the Spark layer
    decodes pixels, and keeps image and mask the same size."""
    img, _ = chest
    stored = np.frombuffer(img.tobytes(), np.int16).reshape(512, 512, 1)
    before = STEPS[name].kind == "mask_op" or name == "apply_mask"
    steps = (["body_mask"] if before else []) + (
        [{"step": "window", "preset": "lung"}] if name == "gamma" else []
    )
    steps.append({"step": name, **REQUIRED.get(name, {})})
    out, spacing, mask = Pipeline.from_config(steps).apply(stored, (0.7, 0.7))
    assert out.ndim == 3 and out.shape[2] == 1 and spacing is not None
    if mask is not None:
        assert mask.dtype == np.bool_ and mask.shape == out.shape[:2]
    np.testing.assert_array_equal(stored[:, :, 0], img)


# ---------------------------------------------------------------------------- sections

YAML = """
segment:
  - step: lung_mask
preprocess:
  - window: {preset: lung}
  - step: resize
    size: 256
  - clahe
augment:
  n_copies: 3
  seed: 7
  rotation_deg: 15
"""


def test_processing_config_from_yaml(chest):
    img, _ = chest
    cfg = ProcessingConfig.model_validate(yaml.safe_load(YAML))
    assert cfg.pipeline().names == ["lung_mask", "window", "resize", "clahe"]
    out, spacing, mask = cfg.pipeline().apply(img, (0.7, 0.7))
    assert mask.shape == out.shape == (256, 256)
    copies = cfg.augment.apply(out, spacing, "img-9", mask)
    assert len(copies) == 3 and all(c.mask.shape == (256, 256) for c in copies)
    again = cfg.augment.copy_of(out, spacing, "img-9", 2, mask)
    np.testing.assert_array_equal(again.image, copies[2].image)
    direct = aug.augment(out, spacing, 7, 3, image_id="img-9", mask=mask,
                         **cfg.augment.variation())
    np.testing.assert_array_equal(direct[1].image, copies[1].image)
    dumped = cfg.model_dump(mode="json")
    assert ProcessingConfig.model_validate(dumped).hash() == cfg.hash()


def test_processing_config_hash_covers_all_sections():
    base = yaml.safe_load(YAML)
    h = ProcessingConfig.model_validate(base).hash()
    variants = [
        {**base, "augment": {**base["augment"], "seed": 8}},
        {**base, "augment": None},
        {**base, "segment": []},
        {**base, "preprocess": base["preprocess"][:2]},
    ]
    hashes = {ProcessingConfig.model_validate(v).hash() for v in variants}
    assert h not in hashes and len(hashes) == 4


def test_processing_config_errors_name_section_and_step():
    bad = yaml.safe_load(YAML)
    bad["segment"] = [{"step": "window", "preset": "lung"}]
    bad["preprocess"][1]["size"] = "large"
    with pytest.raises(ValidationError) as e:
        ProcessingConfig.model_validate(bad)
    msg = str(e.value)
    assert "segment step 0 (window): 'window' is a step of kind 'intensity'" in msg
    assert "preprocess step 1 (resize): parameter 'size'" in msg
    with pytest.raises(ValidationError, match="n_copy"):
        ProcessingConfig.model_validate({"augment": {"n_copy": 2}})
    with pytest.raises(ValidationError, match="prepocess"):
        ProcessingConfig.model_validate({"prepocess": []})


def test_augment_config_validation():
    assert AugmentConfig().n_copies == 1
    with pytest.raises(ValidationError, match="scale"):
        AugmentConfig(scale=(1.2, 0.8))
    with pytest.raises(ValidationError, match="flip_horizontal"):
        AugmentConfig(flip_horizontal=1.5)


# ---------------------------------------------------------------------------- registry

def test_param_models_match_function_signatures():
    """Every step's parameter model mirrors its function's keyword arguments and defaults."""
    for name, spec in STEPS.items():
        sig = inspect.signature(spec.fn)
        kwargs = {p.name: p for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
        kwargs.pop("mask", None)
        fields = {k: f for k, f in spec.params.model_fields.items()
                  if k not in ("within_mask", "combine")}
        assert set(fields) == set(kwargs), name
        for key, f in fields.items():
            fn_default = kwargs[key].default
            if f.is_required():
                assert fn_default is inspect.Parameter.empty, (name, key)
            elif fn_default is not inspect.Parameter.empty:
                model_default = f.default
                if isinstance(fn_default, int | float) and isinstance(model_default, tuple):
                    fn_default = (fn_default, fn_default)
                assert model_default == fn_default, (name, key)
        if "within_mask" in spec.params.model_fields:
            assert "mask" in sig.parameters, name
    augment_kwargs = {p for p in inspect.signature(aug.augment_once).parameters} - {
        "image", "spacing", "seed", "mask"}
    assert augment_kwargs == set(AugmentConfig.model_fields) - {"n_copies", "seed"}


def test_every_step_is_documented():
    text = DOC.read_text()
    for info in list_steps():
        assert f"`{info['name']}`" in text, info["name"]
        for param in info["params"]:
            assert f"`{param}`" in text, (info["name"], param)
    assert {s["kind"] for s in list_steps() if s["name"] in ("lung_mask", "open")} <= SEGMENT_KINDS


def test_every_parameter_has_a_description_and_the_doc_tables_are_current():
    models = {spec.params for spec in STEPS.values()} | {AugmentConfig, ProcessingConfig}
    missing = [f"{m.__name__}.{name}" for m in models
               for name, f in m.model_fields.items() if not (f.description or "").strip()]
    assert not missing
    assert all(p["description"] for s in list_steps() for p in s["params"].values())
    text = DOC.read_text()
    assert text.count("<!-- generated: ") == 5
    assert render(text) == text, "run `python -m medspark.steps.docs` to regenerate the tables"


def test_step_packages_do_not_import_each_other_or_the_registry():
    """preprocess and segment sit below medspark.steps: importing them never loads it, and
    preprocess never loads segment (no import cycle between the three)."""
    code = ("import sys, medspark.preprocess; a = sorted(m for m in sys.modules if "
            "m.startswith(('medspark.steps', 'medspark.segment'))); import medspark.segment; "
            "print(a, [m for m in sys.modules if m.startswith('medspark.steps')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"
