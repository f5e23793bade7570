"""Diagnostics: checks that an approximate posterior or emulator is right.

Two-sample tests: :func:`c2st`, :func:`mmd` / :func:`mmd_test`. Calibration of an amortized posterior on
held-out pairs, batched over observations (one ``sample`` call for many x): :func:`sbc`,
:func:`expected_coverage`, :func:`tarp`, and :func:`calibration` (all three from one set of draws); the
``*_from_samples`` forms take draws already made. Per-observation summaries: :func:`z_scores`,
:func:`posterior_predictive_check`. docs/diagnostics.md describes each.

Emulators against their simulator at one θ: :func:`compare_fields` (P(k), its covariance and correlations,
one-point PDF, peaks, Minkowski functionals, the reduced bispectrum), :func:`compare_bispectra` (2D and 3D),
:func:`compare_point_sets` (g(r), counts); the single statistics live in :mod:`physgen.diagnostics.emulator`,
:mod:`~physgen.diagnostics.bispectrum`, :mod:`~physgen.diagnostics.emulator_points`,
:mod:`~physgen.diagnostics.minkowski` and :mod:`~physgen.diagnostics.emulator_ising`, their figures in
:mod:`~physgen.diagnostics.emulator_plots` (docs/emulators.md).
"""

from physgen.diagnostics.c2st import c2st
from physgen.diagnostics.calibration import CalibrationResult, calibration
from physgen.diagnostics.coverage import (
    CoverageResult,
    coverage_from_log_probs,
    coverage_from_samples,
    expected_coverage,
)
from physgen.diagnostics.bispectrum import compare_bispectra
from physgen.diagnostics.emulator import compare_fields
from physgen.diagnostics.emulator_points import compare_point_sets
from physgen.diagnostics.mmd import MMDResult, mmd, mmd_test
from physgen.diagnostics.ppc import PPCResult, posterior_predictive_check
from physgen.diagnostics.sampling import draw_log_probs, posterior_draws
from physgen.diagnostics.sbc import SBCResult, sbc, sbc_from_samples, sbc_ranks
from physgen.diagnostics.tarp import TARPResult, tarp, tarp_from_samples, tarp_references
from physgen.diagnostics.zscores import ZScoreResult, z_scores

__all__ = [
    "c2st",
    "mmd",
    "mmd_test",
    "MMDResult",
    "sbc",
    "sbc_from_samples",
    "sbc_ranks",
    "SBCResult",
    "expected_coverage",
    "coverage_from_samples",
    "coverage_from_log_probs",
    "CoverageResult",
    "tarp",
    "tarp_from_samples",
    "tarp_references",
    "TARPResult",
    "calibration",
    "CalibrationResult",
    "posterior_draws",
    "draw_log_probs",
    "z_scores",
    "ZScoreResult",
    "posterior_predictive_check",
    "PPCResult",
    "compare_fields",
    "compare_bispectra",
    "compare_point_sets",
]
