"""Fresh code at each start: a job's source is imported again, so an edit is picked up."""

from __future__ import annotations

import sys
import textwrap

import pytest

from actors.job_host import initial_values, load_job_class
from actors.settings import SettingError, index

@pytest.fixture(autouse=True)
def restore_modules():
    """load_job_class drops modules from sys.modules (in a job process that is the point); keep the
    test process's module identities intact for the tests that run after these."""
    saved = dict(sys.modules)
    yield
    sys.modules.clear()
    sys.modules.update(saved)


SOURCE = """
from actors.job import Job
from actors.settings import Setting

class Counter(Job):
    name = "counter"
    settings = (Setting(name="step", datatype="integer", settable=True, default={step}),
                Setting(name="total", datatype="integer", default=0))
"""


def test_a_module_source_is_reimported_after_an_edit(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "fresh_counter.py").write_text(textwrap.dedent(SOURCE.format(step=1)))
    first = load_job_class("fresh_counter:Counter", "counter")
    (tmp_path / "fresh_counter.py").write_text(textwrap.dedent(SOURCE.format(step=2)))
    second = load_job_class("fresh_counter:Counter", "counter")
    assert first.settings[0].default == 1
    assert second.settings[0].default == 2


def test_a_file_source_is_reimported_after_an_edit(tmp_path):
    path = tmp_path / "counter.py"
    path.write_text(textwrap.dedent(SOURCE.format(step=3)))
    assert load_job_class(f"file:{path}", "counter").settings[0].default == 3
    path.write_text(textwrap.dedent(SOURCE.format(step=4)))
    assert load_job_class(f"file:{path}", "counter").settings[0].default == 4


def test_a_file_without_the_named_job_is_refused(tmp_path):
    path = tmp_path / "other.py"
    path.write_text(textwrap.dedent(SOURCE.format(step=1)))
    with pytest.raises(ImportError, match="no Job subclass with name = 'other'"):
        load_job_class(f"file:{path}", "other")


def test_initial_values_take_defaults_and_refuse_unknown_or_read_only_options(tmp_path):
    path = tmp_path / "counter.py"
    path.write_text(textwrap.dedent(SOURCE.format(step=5)))
    specs = index(load_job_class(f"file:{path}", "counter").settings)
    assert initial_values(specs, {}) == {"step": 5, "total": 0}
    assert initial_values(specs, {"step": "7"})["step"] == 7
    with pytest.raises(SettingError, match="unknown option --total; options are: --step"):
        initial_values(specs, {"total": "3"})
    with pytest.raises(SettingError, match="unknown option --speed"):
        initial_values(specs, {"speed": "3"})
