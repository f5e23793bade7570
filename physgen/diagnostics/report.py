"""A validation report: metrics, warnings, figures, config, versions, timings and samples, as files.

:class:`Report` is what :func:`physgen.validate` returns and ``physgen run`` / ``physgen validate`` write.
``Report.write(out_dir)`` writes, each file atomically (a killed writer leaves the old file or none):

    report.html             one self-contained page: warnings first (red), notes, a metrics table, the figures
                            (PNG embedded as base64 data URIs), the config, versions and timings; no script,
                            no external resource
    <figure>.png            every figure
    metrics.json            {"metrics", "warnings", "notes", "timings", "versions"}
    <name>.nc               every sample set as arviz InferenceData (netCDF), e.g. posterior_samples.nc,
                            reference_samples.nc
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from physgen.io import atomic_write

__all__ = ["Report", "versions", "flatten_metrics", "jsonable", "draws_to_idata", "stack_references"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.warnings{background:#fdecea;border:2px solid #c62828;color:#b71c1c;padding:.6em 1em;border-radius:4px}
.warnings li{margin:.3em 0}.notes{background:#e8f0fe;border:1px solid #5c7cba;padding:.6em 1em;border-radius:4px}
.ok{background:#e8f5e9;border:1px solid #2e7d32;color:#1b5e20;padding:.6em 1em;border-radius:4px}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{font-family:monospace;text-align:right}.fail{color:#b71c1c;font-weight:bold}
.pass{color:#1b5e20}figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto;border:1px solid #eee}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
"""


def versions() -> dict[str, str]:
    """Versions of physgen, torch and Python (and the platform) for a report."""
    import torch

    import physgen

    return {
        "physgen": physgen.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def jsonable(value: Any) -> Any:
    """``value`` with tensors, arrays and numpy scalars turned into lists and Python numbers (NaN/inf -> None)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics as ``[(dotted.key, value)]`` rows; a list of dicts gives ``key[i].sub`` rows."""
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            rows += flatten_metrics(value, name)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                rows += flatten_metrics(v, f"{name}[{i}]")
        else:
            rows.append((name, value))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return f'<td class="{"pass" if value else "fail"}">{"yes" if value else "no"}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, list):
        if len(value) > 8:
            return f"<td>[{len(value)} values]</td>"
        text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        return f"<td>[{html.escape(text)}]</td>"
    return f"<td>{html.escape(str(value))}</td>"


@dataclass
class Report:
    """The outcome of a validation, ready to be read (``to_html``) or written (``write``).

    Attributes:
        metrics: nested JSON-ready numbers (``{"calibration": {"sbc": {...}}, "observations": [...]}``).
        warnings: what a reader must see first (an unconverged reference, a misspecified observation, a failed
            calibration test), in order of importance.
        notes: neutral statements about how the validation was done (e.g. "validated by calibration only").
        figures: ``name -> PNG bytes`` (written as ``name.png``).
        config: the config that produced the run (shown as JSON).
        versions: package versions (:func:`versions`).
        timings: ``stage -> seconds``.
        samples: ``file stem -> arviz InferenceData`` (written as ``stem.nc``).
        title: the page title.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    title: str = "physgen validation report"

    @property
    def passed(self) -> bool:
        """True when the report carries no warning."""
        return not self.warnings

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: metrics, warnings, notes, timings, versions (JSON-ready)."""
        return jsonable(
            {
                "metrics": self.metrics,
                "warnings": self.warnings,
                "notes": self.notes,
                "timings": self.timings,
                "versions": self.versions,
            }
        )

    def to_html(self) -> str:
        """One self-contained HTML page (inline CSS, PNGs as data URIs, no script, no external link)."""
        e = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
            f"<p>Written {e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}.</p>",
        ]
        if self.warnings:
            items = "".join(f"<li>{e(w)}</li>" for w in self.warnings)
            parts.append(
                f'<div class="warnings" id="warnings"><strong>{len(self.warnings)} warning'
                f"{'s' if len(self.warnings) > 1 else ''}</strong><ul>{items}</ul></div>"
            )
        else:
            parts.append('<div class="ok" id="warnings">No warnings: every check that ran passed.</div>')
        if self.notes:
            parts.append('<div class="notes"><ul>' + "".join(f"<li>{e(n)}</li>" for n in self.notes) + "</ul></div>")
        parts.append("<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>")
        for key, value in flatten_metrics(jsonable(self.metrics)):
            parts.append(f"<tr><td>{e(key)}</td>{_cell(value)}</tr>")
        parts.append("</table>")
        if self.figures:
            parts.append("<h2>Figures</h2>")
            for name, png in self.figures.items():
                data = base64.b64encode(png).decode("ascii")
                parts.append(
                    f'<figure><img alt="{e(name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(name)}</figcaption></figure>"
                )
        if self.timings:
            parts.append("<h2>Timings</h2><table><tr><th>stage</th><th>seconds</th></tr>")
            parts += [f'<tr><td>{e(k)}</td><td class="num">{v:.2f}</td></tr>' for k, v in self.timings.items()]
            parts.append("</table>")
        parts.append("<h2>Versions</h2><table>")
        parts += [f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in self.versions.items()]
        parts.append("</table><h2>Config</h2>")
        parts.append(f"<pre>{e(json.dumps(jsonable(self.config), indent=2))}</pre>")
        if self.samples:
            parts.append(
                "<h2>Sample files</h2><ul>"
                + "".join(f"<li>{e(k)}.nc (arviz InferenceData)</li>" for k in self.samples)
                + "</ul>"
            )
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write report.html, the PNGs, metrics.json and the samples (netCDF) into ``out_dir``, each atomically.

        Returns:
            the path of report.html.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, png in self.figures.items():
            atomic_write(out / f"{name}.png", png)
        for stem, idata in self.samples.items():
            _write_netcdf(idata, out / f"{stem}.nc")
        atomic_write(out / "metrics.json", json.dumps(self.summary(), indent=1))
        return atomic_write(out / "report.html", self.to_html())


def _write_netcdf(idata: Any, path: Path) -> None:
    """InferenceData to netCDF via a temporary file in the same folder, then an atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def draws_to_idata(samples: Any, names: list[str], x_obs: Any, theta_true: Any = None):
    """Draws ``(chain, draw, K, D)`` (Tensor or array) as InferenceData: variables ``names`` with dims
    (chain, draw, observation), the observations ``x_obs (K, *x_shape)`` in ``observed_data``."""
    from physgen.deps import az
    import numpy as np

    arr = samples.detach().cpu().numpy() if hasattr(samples, "detach") else np.asarray(samples)
    x_obs = x_obs.detach().cpu() if hasattr(x_obs, "detach") else x_obs
    posterior = {name: arr[..., i] for i, name in enumerate(names)}
    dims = {name: ["observation"] for name in names}
    attrs = {"theta_true": jsonable(theta_true)} if theta_true is not None else {}
    return az.from_dict(
        posterior=posterior,
        observed_data={"x": np.asarray(x_obs)},
        dims={**dims, "x": ["observation", *[f"x_dim_{i}" for i in range(np.ndim(x_obs) - 1)]]},
        attrs={k: str(v) for k, v in attrs.items()},
    )


def stack_references(idatas: list, names: list[str], x_obs: Any):
    """Per-observation MCMC references stacked on an ``observation`` dim (shorter chains padded with NaN)."""
    import numpy as np

    arrs = [
        np.stack(
            [
                np.asarray(i.posterior[v].transpose("chain", "draw").values, dtype=float)
                for v in list(i.posterior.data_vars)
            ],
            -1,
        )
        for i in idatas
    ]  # (chain, draw, D)
    c, d = max(a.shape[0] for a in arrs), max(a.shape[1] for a in arrs)
    out = np.full((c, d, len(arrs), arrs[0].shape[-1]), np.nan)
    for k, a in enumerate(arrs):
        out[: a.shape[0], : a.shape[1], k] = a
    idata = draws_to_idata(out, names, x_obs, None)
    flags = [{**dict(getattr(i, "attrs", {}) or {}), **dict(i.posterior.attrs)}.get("converged", 0) for i in idatas]
    idata.posterior.attrs["converged"] = str([int(bool(int(f))) for f in flags])
    return idata
