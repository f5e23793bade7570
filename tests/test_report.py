"""Reports as a person sees them: one self-contained HTML page (warnings first), metrics.json, the files;
the validation figures; and the page rendered by headless Chromium when it is installed."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from physgen.diagnostics import plots
from physgen.diagnostics.report import Report, draws_to_idata, flatten_metrics, stack_references
from physgen.io import to_inference_data


def _report(with_samples=True):
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 101, size=(200, 2))
    levels = np.linspace(0.05, 0.95, 19)
    figures = {
        "sbc_ranks": plots.to_png(plots.sbc_rank_plot(ranks, 100, ["a", "b"])),
        "coverage": plots.to_png(plots.coverage_plot(levels, levels, levels - 0.05, levels + 0.05)),
        "tarp": plots.to_png(plots.tarp_plot(np.linspace(0, 1, 11), np.linspace(0, 1, 11), 0.01, 0.5)),
        "pair_plot_0": plots.to_png(plots.pair_plot({"posterior": rng.normal(size=(300, 2)),
                                                     "reference": rng.normal(size=(300, 2))}, ["a", "b"],
                                                    truth=[0.0, 0.0])),
        "training_curves": plots.to_png(plots.training_plot(
            [{"epoch": i, "train_loss": 1.0 / (i + 1), "val_loss": 1.2 / (i + 1), "lr": 1e-3} for i in range(5)])),
    }
    samples = {}
    if with_samples:
        x_obs = torch.zeros(1, 2)
        samples["posterior_samples"] = draws_to_idata(torch.randn(1, 50, 1, 2), ["a", "b"], x_obs, torch.zeros(1, 2))
        samples["reference_samples"] = stack_references(
            [to_inference_data(rng.normal(size=(4, 25, 2)), ["a", "b"], attrs={"converged": 1})], ["a", "b"], x_obs)
    return Report(
        metrics={"calibration": {"sbc": {"min_p_value": 0.3, "passed": True, "p_values": [0.3, 0.6]}},
                 "observations": [{"index": 0, "c2st": 0.51, "reference": {"converged": True, "rhat_max": 1.002}}]},
        warnings=["Observation 0: the MCMC reference did not converge <R-hat>", "SBC: second warning"],
        notes=["Validated by calibration only"],
        figures=figures, config={"simulator": {"name": "two_moons"}},
        versions={"physgen": "0.1.0", "torch": torch.__version__, "python": "3"}, timings={"calibration": 1.5},
        samples=samples,
    )


def test_html_is_self_contained_with_warnings_first():
    report = _report(with_samples=False)
    page = report.to_html()
    # nothing is fetched: no http(s) src/href, no script, every image an embedded PNG
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    imgs = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(imgs) == len(report.figures) == 5
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    # warnings (escaped, in order) come before the metrics table, the figures, the config and versions
    first, second = page.index("did not converge &lt;R-hat&gt;"), page.index("SBC: second warning")
    assert first < second < page.index("<h2>Metrics</h2>") < page.index("<h2>Figures</h2>") < page.index("<h2>Config</h2>")
    assert 'class="warnings"' in page[: page.index("<h2>Metrics</h2>")]
    for text in ("calibration.sbc.min_p_value", "observations[0].c2st", "two_moons", torch.__version__, "calibration"):
        assert text in page
    clean = Report(metrics={"a": 1.0}).to_html()
    assert "No warnings" in clean and 'class="warnings"' not in clean


def test_write_outputs_and_metrics_json(tmp_path):
    import arviz as az

    report = _report()
    html_path = report.write(tmp_path / "out")
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"report.html", "metrics.json", "posterior_samples.nc", "reference_samples.nc",
                     *(f"{k}.png" for k in report.figures)}
    assert html_path.read_text() == report.to_html() or html_path.read_text().startswith("<!DOCTYPE html>")
    for name in report.figures:
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(summary) == {"metrics", "warnings", "notes", "timings", "versions"}
    assert summary["metrics"]["observations"][0]["c2st"] == 0.51
    assert summary["warnings"][0].startswith("Observation 0: the MCMC reference did not converge")
    assert summary["timings"] == {"calibration": 1.5} and summary["versions"]["physgen"] == "0.1.0"
    post = az.from_netcdf(str(tmp_path / "out" / "posterior_samples.nc"))
    assert post.posterior["a"].shape == (1, 50, 1)
    ref = az.from_netcdf(str(tmp_path / "out" / "reference_samples.nc"))
    assert ref.posterior["b"].shape == (4, 25, 1) and ref.posterior.attrs["converged"] == "[1]"
    assert not list((tmp_path / "out").glob("*.tmp"))  # atomic writes leave no temporary file


def test_flatten_and_non_finite_metrics():
    rows = dict(flatten_metrics({"a": {"b": 1, "c": [{"d": 2}]}, "e": [1.0, 2.0]}))
    assert rows == {"a.b": 1, "a.c[0].d": 2, "e": [1.0, 2.0]}
    summary = Report(metrics={"x": float("nan"), "y": torch.tensor([1.0, float("inf")])}).summary()
    assert summary["metrics"] == {"x": None, "y": [1.0, None]}
    json.dumps(summary, allow_nan=False)


def test_sbc_band_is_simultaneous():
    """Uniform ranks leave the band in about 5% of replicas (a too-narrow pointwise band would leave it far more)."""
    z, half = plots.sbc_band(300, 50)
    rng = np.random.default_rng(7)
    js = np.rint(z * 51 - 1).astype(int)
    out = 0
    for _ in range(400):
        r = np.sort(rng.integers(0, 51, 300))
        out += bool((np.abs(np.searchsorted(r, js, side="right") / 300 - z) > half).any())
    assert 0.01 < out / 400 < 0.10
    assert half[len(half) // 2] > 2 * max(half[0], half[-1])  # shaped: widest in the middle
    fig = plots.sbc_rank_plot(rng.integers(0, 51, (300, 2)), 50, ["a", "b"])
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_PROBE = """<script>
window.__errs=[];window.addEventListener('error',function(e){window.__errs.push(String((e.target&&e.target.src)||e.message).slice(0,80))},true);
window.addEventListener('load',function(){var im=document.images,bad=[];for(var i=0;i<im.length;i++){if(!(im[i].complete&&im[i].naturalWidth>0))bad.push(im[i].alt)}
var d=document.createElement('pre');d.id='__probe';d.textContent=JSON.stringify({images:im.length,broken:bad,errors:window.__errs});document.body.appendChild(d)});
</script>"""


def _chromium(tmp_path, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=10000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (bash .ci/setup test installs Debian's package)")
def test_report_renders_in_headless_chromium(tmp_path):
    """The page as a browser loads it: every <img> decoded (naturalWidth > 0), no error event, no console message.

    A copy of the page gets a probe script that, on load, writes the state of every image and the errors caught
    into the DOM, which --dump-dom prints; the probe itself is checked on a page with a broken image."""
    page = _report(with_samples=False).write(tmp_path / "out")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("<head>", "<head>" + _PROBE, 1))
    out = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'<pre id="__probe">([^<]*)</pre>', out.stdout)
    assert found, out.stdout[-2000:]
    state = json.loads(found.group(1))
    assert state == {"images": 5, "broken": [], "errors": []}
    assert "CONSOLE" not in out.stderr, [line for line in out.stderr.splitlines() if "CONSOLE" in line]
    # the probe sees a broken image and a script error
    bad = tmp_path / "bad.html"
    bad.write_text(probed.read_text().replace("</body>", '<img alt="x" src="data:image/png;base64,AAAA">'
                                                        "<script>undefinedName()</script></body>"))
    out = _chromium(tmp_path, "--dump-dom", bad.as_uri())
    state = json.loads(re.search(r'<pre id="__probe">([^<]*)</pre>', out.stdout).group(1))
    assert state["broken"] == ["x"] and any("undefinedName" in e for e in state["errors"])
    assert "CONSOLE" in out.stderr
    # and a screenshot of the real page (for a person to look at)
    shot = tmp_path / "report.png"
    out = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri())
    assert out.returncode == 0 and shot.stat().st_size > 10_000
