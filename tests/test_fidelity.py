"""Fidelity evaluators on the micro teacher: the distillation options, ``generation`` and ``sr-proxy``."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from evaluators import make_evaluator
from evaluators.context import EvaluationContext
from evaluators.distillation import ValidationSet, identity_arch
from evaluators.generation import paired_kid
from tocsr_nas.errors import ConfigError
from tocsr_nas.search.components import validation_latents
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.supernet import Supernet
from tocsr_nas.vae import build_vae, save_vae

MICRO_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 16, "block_out_channels": [8, 8],
             "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
             "layers_per_block": 1, "norm_num_groups": 4}


def micro_vae_folder(folder: Path) -> Path:
    """A randomly initialised 16-channel VAE (factor 2) for the micro teacher, saved as a VAE folder."""
    torch.manual_seed(0)
    save_vae(build_vae(MICRO_VAE), folder)
    return folder


def make_context(teacher, space, cache_dir: Path, count: int = 4) -> EvaluationContext:
    latents = validation_latents(teacher, ValidationConfig(latents={"source": "gaussian"}, count=count), 16)
    return EvaluationContext(space=space, teacher=teacher, cache_dir=cache_dir, constraints={},
                             shared={"supernet": lambda: Supernet(teacher, space),
                                     "validation": lambda: ValidationSet.build(teacher, latents, batch_size=2)})


@pytest.fixture(scope="module")
def context(micro_teacher, micro_space, tmp_path_factory) -> EvaluationContext:
    return make_context(micro_teacher, micro_space, tmp_path_factory.mktemp("fidelity"))


def student(space):
    return space.arch({"down:A": "I", "up:R": "slim(width=0.5)"})


def test_identity_baseline_is_one_for_the_identity_arch_and_zero_for_the_teacher(context, micro_space) -> None:
    evaluator = make_evaluator("distillation", context=context)  # the default: baseline identity
    plain = make_evaluator("distillation", context=context, baseline="none")
    identity = evaluator.evaluate(identity_arch(micro_space))
    assert identity["loss"] == 1.0 and identity["raw_loss"] == identity["baseline_loss"] > 0
    assert evaluator.evaluate(micro_space.teacher_arch())["loss"] == 0.0
    scored = evaluator.evaluate(student(micro_space))
    assert scored["raw_loss"] == plain.evaluate(student(micro_space))["loss"]
    assert scored["loss"] == pytest.approx(scored["raw_loss"] / identity["raw_loss"])


def test_the_original_options_keep_the_original_fingerprint_and_others_change_it(context) -> None:
    from evaluators.distillation import DistillationEvaluator

    original = DistillationEvaluator(context.get("supernet"), context.get("validation"),
                                     surrogates_id=context.surrogates_id)  # no options: the first evaluator
    explicit = make_evaluator("distillation", context=context, prediction="epsilon", timesteps="uniform",
                              snr_weighting="none", baseline="none")
    assert explicit.fingerprint == original.fingerprint
    default = make_evaluator("distillation", context=context)
    assert default.fingerprint == make_evaluator("distillation", context=context, baseline="identity").fingerprint
    others = [make_evaluator("distillation", context=context, **options).fingerprint for options in (
        {"prediction": "x0"}, {"prediction": "v"}, {"timesteps": [0, 250]}, {"timesteps": "focused"},
        {"timesteps": "focused", "center": 100}, {"snr_weighting": "min-snr"}, {})]
    assert len({original.fingerprint, *others}) == 1 + len(others)


def test_prediction_spaces_scale_the_error_as_the_schedule_says(context, micro_space) -> None:
    """At one fixed timestep, x0 errors are eps errors times sqrt((1 - a) / a) and v errors eps errors / sqrt(a)."""
    fixed = {"timesteps": [20, 20]}
    mse = {p: make_evaluator("distillation", context=context, prediction=p, **fixed).evaluate(student(micro_space))["mse"]
           for p in ("epsilon", "x0", "v")}
    alpha = float(context.get("validation").alphas_cumprod[20])
    assert mse["x0"] == pytest.approx(mse["epsilon"] * (1 - alpha) / alpha, rel=1e-6)
    assert mse["v"] == pytest.approx(mse["epsilon"] / alpha, rel=1e-6)
    assert mse["x0"] < mse["epsilon"] < mse["v"]  # low noise: x0 is nearly given, the noise is hard


def test_timestep_options_renoise_the_same_latents(context, micro_space) -> None:
    low = make_evaluator("distillation", context=context, timesteps=[0, 50])
    focused = make_evaluator("distillation", context=context, timesteps="focused", center=900, width=10)
    assert int(low.validation.timesteps.max()) <= 50 and int(focused.validation.timesteps.min()) > 850
    assert torch.equal(low.validation.latents, context.get("validation").latents)
    assert low.evaluate(student(micro_space))["loss"] != focused.evaluate(student(micro_space))["loss"]


def test_min_snr_weighting_downweights_low_noise_samples(context, micro_space) -> None:
    """On a wide range, a large gamma leaves eps errors unweighted; a small one gives low-noise samples less weight."""
    wide = {"timesteps": [0, 999], "prediction": "epsilon"}
    arch = student(micro_space)
    plain = make_evaluator("distillation", context=context, **wide).evaluate(arch)["loss"]
    huge = make_evaluator("distillation", context=context, snr_weighting="min-snr", snr_gamma=1e9, **wide)
    assert huge.evaluate(arch)["loss"] == pytest.approx(plain, rel=1e-9)
    small = make_evaluator("distillation", context=context, snr_weighting="min-snr", snr_gamma=0.01, **wide)
    assert small.evaluate(arch)["loss"] != pytest.approx(plain, rel=1e-3)


@pytest.mark.parametrize("options, message", [
    ({"prediction": "eps"}, r"evaluators\.distillation\.prediction: 'eps' is not allowed \(allowed: epsilon, v, x0\)"),
    ({"timesteps": "low"}, r"evaluators\.distillation\.timesteps: 'low' is not allowed \(allowed: uniform, focused"),
    ({"timesteps": [300, 100]}, r"evaluators\.distillation\.timesteps: bad range \[300, 100\]"),
    ({"snr_weighting": "max"}, r"evaluators\.distillation\.snr_weighting: 'max' is not allowed \(allowed: min-snr, none\)"),
    ({"baseline": "teacher"}, r"evaluators\.distillation\.baseline: 'teacher' is not allowed \(allowed: identity, none\)"),
    ({"center": 5000}, r"evaluators\.distillation\.center: center 5000 out of range \(allowed: 0\.\.999\)"),
    ({"width": -1}, r"evaluators\.distillation\.width: -1 must be a positive number"),
    ({"gamma": 5}, r"unknown option 'gamma' \(allowed: baseline, center"),
])
def test_bad_distillation_options_are_one_line_config_errors(context, options, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make_evaluator("distillation", context=context, **options)
    assert "\n" not in str(info.value)


def test_bad_generation_options_are_one_line_config_errors(context) -> None:
    with pytest.raises(ConfigError, match=r"evaluators\.generation\.options: unknown option 'k' \(allowed: batch_size, samples, seed, steps\)"):
        make_evaluator("generation", context=context, k=4)
    with pytest.raises(ConfigError, match=r"evaluators\.generation\.steps: 0 must be an integer >= 1"):
        make_evaluator("generation", context=context, steps=0)


def test_paired_kid_is_zero_for_identical_sets_and_positive_for_shifted_ones() -> None:
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert paired_kid(x, x) == 0.0
    assert paired_kid(x, x + 1.0) > 0


@pytest.fixture(scope="module")
def vae_context(micro_teacher, micro_space, tmp_path_factory) -> EvaluationContext:
    folder = micro_vae_folder(tmp_path_factory.mktemp("micro_vae"))
    from tocsr_nas.vae import load_vae

    teacher = dataclasses.replace(micro_teacher, vae=load_vae(folder))
    return make_context(teacher, micro_space, tmp_path_factory.mktemp("fidelity_vae"))


def test_generation_of_the_teacher_matches_itself_and_a_student_does_not(vae_context, micro_space) -> None:
    evaluator = make_evaluator("generation", context=vae_context, samples=4, steps=2, batch_size=4)
    teacher = evaluator.evaluate(micro_space.teacher_arch())
    assert teacher == {"loss": 0.0, "latent_mse": 0.0, "psnr": 100.0, "ssim": 1.0, "kid": 0.0}
    scored = evaluator.evaluate(identity_arch(micro_space))
    assert scored["loss"] > 0 and scored["psnr"] < 100.0 and scored["ssim"] < 1.0 and math.isfinite(scored["kid"])
    assert make_evaluator("generation", context=vae_context, samples=4, steps=3).fingerprint != evaluator.fingerprint


@pytest.mark.slow
def test_sr_proxy_trains_scores_held_out_crops_and_reads_back(vae_context, micro_space, tmp_path) -> None:
    vae = micro_vae_folder(tmp_path / "vae")
    evaluator = make_evaluator("sr-proxy", context=vae_context, vae=str(vae), steps=2, batch_size=2, crop=32,
                               eval_crop=32, diffusion_steps=1)
    arch = student(micro_space)
    first = evaluator.evaluate(arch)
    assert set(first) == {"psnr_y", "loss"} and first["loss"] == -first["psnr_y"] and 5 < first["psnr_y"] < 60
    assert evaluator.evaluate(arch) == first  # read back from its folder
    assert (evaluator.folder / arch.arch_id / "sr_adapt" / "model").is_dir()


def test_sr_proxy_needs_a_vae(context) -> None:
    with pytest.raises(ConfigError, match=r"evaluators\.sr-proxy\.vae: the teacher ships no VAE"):
        make_evaluator("sr-proxy", context=context)


def shipped_searches() -> list:
    """One param per distinct (space, validation settings) of the shipped experiments' search stages (sweeps
    expanded), with every eps those runs ship; spaces other than the default one are ``slow``."""
    from tocsr_nas.experiments import resolve

    groups: dict = {}
    for path in sorted((Path(__file__).parents[1] / "experiments").glob("*.yaml")):
        for suffix, config in resolve(path):
            if "search" in config.stages:
                search = config.search
                key = (search.space, search.validation.model_dump_json(), search.latent_size)
                entry = groups.setdefault(key, (search, {}))
                entry[1].setdefault(f"{path.stem}{suffix}", set()).update(search.eps)
    return [pytest.param(search, runs, id=f"{search.space}-{'+'.join(sorted(runs))[:60]}",
                         marks=[] if search.space == "tiny_ldm" else [pytest.mark.slow])
            for search, runs in groups.values()]


@pytest.mark.parametrize("search, runs", shipped_searches())
def test_the_identity_arch_satisfies_no_shipped_eps(search, runs, tmp_path) -> None:
    """The all-identity arch, scored by the default evaluator on the experiment's teacher with its own validation
    latents (at most 4 of them, to stay quick), is over every eps those experiments ship (else a search's first
    pick can be the empty UNet)."""
    import search_spaces
    from evaluators.distillation import identity_arch as identity_of
    from tocsr_nas.search.components import evaluation_context
    from tocsr_nas.teachers import load_teacher

    space = search_spaces.load(search.space)
    validation = search.validation.model_copy(update={"count": min(4, search.validation.count), "batch_size": 4})
    reduced = search.model_copy(update={"device": "cpu", "dtype": "float32", "validation": validation})
    context = evaluation_context(reduced, tmp_path, space, load_teacher(space.teacher))
    score = make_evaluator("distillation", context=context).evaluate(identity_of(space))["loss"]  # as a search builds it
    over = {run: sorted(eps) for run, eps in runs.items() if max(eps) >= score}
    assert not over, f"the all-identity arch scores {score:.4g}, within these shipped eps: {over}"
