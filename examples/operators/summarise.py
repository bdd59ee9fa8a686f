"""Operator `summarise`: join both branches and write a report to disk (driver API).

Contrast-to-noise of the smoothed volume inside and outside the raw threshold mask.
"""

from __future__ import annotations

import os

from clara_core.pipeline import Driver


def execute(driver: Driver, payload) -> bool:
    """Read smoothed, mask, volume-ml and series-uid; write report.txt."""
    inputs = payload.inputs
    with inputs["smoothed"].mapped() as smoothed, inputs["mask"].mapped() as mask:
        inside, outside = smoothed[mask != 0], smoothed[mask == 0]
        cnr = (inside.mean() - outside.mean()) / outside.std()
    lines = [
        "CT branches report",
        f"  job       {driver.job_name} {driver.job_id}",
        f"  series    {inputs['series-uid'].read_text()}",
        f"  phantom   {inputs['volume-ml'].read()[0]:.1f} mL (raw threshold)",
        f"  smoothed  mean inside {inside.mean():.3f}, outside {outside.mean():.3f}, CNR {cnr:.2f}",
    ]
    path = os.path.join(payload.output_path(), "report.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return True


if __name__ == "__main__":
    Driver(execute=execute).run()
