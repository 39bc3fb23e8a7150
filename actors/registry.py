"""Which jobs a node can run, and where their code is.

Names are resolved to *sources* (``module:Class`` or ``file:/path.py``) without importing anything, so
the long-lived supervisor never caches job code: each job process imports its source fresh (see
:mod:`actors.job_host`). Sources: the built-ins, pip packages declaring an entry point in the
``pioactors.jobs`` group, and drop-in files ``<plugin_dir>/<job_name>.py``.
"""

from __future__ import annotations

import importlib.metadata
import os

BUILTIN_JOBS: dict[str, str] = {
    "stirring": "actors.stirring:Stirring",
    "self_test": "actors.self_test:SelfTest",
    "od_reading": "actors.od_reading:OdReading",
    "growth_rate_calculating": "actors.growth_rate_calculating:GrowthRateCalculating",
    "od_blank": "actors.od_blank:OdBlank",
    "temperature_automation": "actors.temperature_automation:TemperatureAutomation",
    "dosing_automation": "actors.dosing_automation:DosingAutomation",
    "led_automation": "actors.led_automation:LedAutomation",
    "led_intensity": "actors.led_intensity:LedIntensity",
    "add_media": "actors.pumps:AddMedia",
    "add_alt_media": "actors.pumps:AddAltMedia",
    "remove_waste": "actors.pumps:RemoveWaste",
    "circulate_media": "actors.pumps:CirculateMedia",
    "circulate_alt_media": "actors.pumps:CirculateAltMedia",
    "monitor": "actors.monitor:Monitor",
}

ENTRY_POINT_GROUP = "pioactors.jobs"


def available_jobs(plugin_dir: str | None) -> dict[str, str]:
    jobs = dict(BUILTIN_JOBS)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        jobs[ep.name] = ep.value
    if plugin_dir and os.path.isdir(plugin_dir):
        for entry in sorted(os.listdir(plugin_dir)):
            stem, ext = os.path.splitext(entry)
            if ext == ".py" and not stem.startswith("_"):
                jobs[stem] = "file:" + os.path.join(plugin_dir, entry)
    return jobs
