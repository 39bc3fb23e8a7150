"""What is wired where, for each HAT version and vessel model, read from YAML and checked up front.

Why data and not code: the HAT generations differ in chips, addresses, channel maps and a few pins
(hardware.md §3.1), and the v1.5 vessel models swap the photodiode ADCs. Keeping that in
``hats/<version>.yaml`` and ``models/<model>.yaml`` means adding a HAT or a model is a new file, and
drivers are built from one validated :class:`HardwareDescription` instead of version branches.

How it loads: :func:`load` reads the HAT file, then deep-merges the model file on top (mappings
merge key by key, everything else is replaced; the model wins). It then validates the result and
collects *every* problem before failing: unknown keys, wrong types, pins off the header, duplicate
pins, I2C address clashes, missing entries, limits in the wrong order. Each is reported as
``file:line: key.path: what is wrong; what to write instead`` in a single
:class:`HardwareDescriptionError`, as ``topology.yaml`` errors are.

Layers: ``hat`` belongs only in HAT files; ``model``, ``vessel`` and ``safety`` only in model
files. Every other section (``i2c``, ``pwm``, ``adc``, ``leds``, ``temperature``, ``gpio``) comes
from the HAT, and a model may override any part of it. Each file starts with ``schema: 1`` so that
a later format change can be migrated explicitly.

``PWM_PINS`` and ``HALL_SENSOR_PIN`` are the HAT 1.2 values, kept as module constants because the
running PWM driver imports them.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable, Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Union

import attrs
import yaml

SCHEMA_VERSION = 1
BCM_PIN_RANGE = (0, 27)  # GPIO numbers on the Pi's 40-pin header
I2C_ADDRESS_RANGE = (0x08, 0x77)  # 7-bit addresses outside the reserved blocks
# Pins with a hardware PWM block; pins on the same block cannot hold different frequencies.
HARDWARE_PWM_BLOCKS = {12: "PWM0", 18: "PWM0", 13: "PWM1", 19: "PWM1"}
ADC_CHIP_INPUTS = {"ads1115": 4, "ads1114": 1, "pico": 4}
LED_CHIP_OUTPUTS = {"dac43608": 8, "pico": 4}
TEMPERATURE_CHIPS = ("tmp1075",)
LED_POCKETS = ("A", "B", "C", "D")
REQUIRED_PWM_CHANNELS = ("stirring", "media", "alt_media", "waste", "heater")
REQUIRED_ADC_SIGNALS = ("pd1", "pd2", "aux", "version")
OPTIONAL_ADC_SIGNALS = ("pd3", "pd4")  # XR models (four photodiodes)
HAT_ONLY_SECTIONS = ("hat",)
MODEL_ONLY_SECTIONS = ("model", "vessel", "safety")

DataDir = Union[Path, Traversable, str]


# =============================================================================================
# The result: frozen values
# =============================================================================================


@attrs.frozen(kw_only=True)
class I2CWiring:
    bus: int
    sda: int
    scl: int


@attrs.frozen(kw_only=True)
class PwmChannel:
    name: str
    connector: int  # label on the HAT, 1-5
    pin: int
    hz: float
    hardware: bool  # True when the pin has a hardware PWM block that the HAT uses


@attrs.frozen(kw_only=True)
class PwmLayout:
    channels: dict[str, PwmChannel]
    hardware_pins: tuple[int, ...]

    def pins(self) -> dict[str, int]:
        return {name: ch.pin for name, ch in self.channels.items()}


@attrs.frozen(kw_only=True)
class AdcInput:
    signal: str  # pd1, pd2, aux, version (pd3, pd4 on XR models)
    chip: str  # ads1115 | ads1114 | pico
    address: int
    channel: int


@attrs.frozen(kw_only=True)
class LedDriver:
    chip: str  # dac43608 | pico
    address: int
    channels: dict[str, int]  # LED pocket A-D -> output on the chip
    ir: str  # pocket that holds the IR LED


@attrs.frozen(kw_only=True)
class TemperatureSensor:
    chip: str
    address: int


@attrs.frozen(kw_only=True)
class GpioPins:
    hall_sensor: int
    status_led: int
    button: int
    mcu_swclk: int | None = None
    mcu_swdio: int | None = None


@attrs.frozen(kw_only=True)
class ModelInfo:
    id: str  # file stem, e.g. "pioreactor_40ml_1.5"
    name: str
    version: str
    display_name: str


@attrs.frozen(kw_only=True)
class Vessel:
    capacity_ml: float
    max_fill_ml: float
    default_efflux_tube_ml: float
    diameter_mm: float | None = None


@attrs.frozen(kw_only=True)
class SafetyLimits:
    heater_reduce_above_c: float
    heater_disable_above_c: float
    heater_shutdown_above_c: float
    ir_led_max_intensity_pct: float


@attrs.frozen(kw_only=True)
class HatDescription:
    """One HAT on its own (no vessel): enough to wire PWM, GPIO and the default chips."""

    version: str
    description: str
    i2c: I2CWiring
    pwm: PwmLayout
    adc: dict[str, AdcInput]
    leds: LedDriver
    temperature: TemperatureSensor
    gpio: GpioPins
    sources: tuple[str, ...]

    def i2c_devices(self) -> dict[int, str]:
        return _i2c_devices(self.adc, self.leds, self.temperature)


@attrs.frozen(kw_only=True)
class HardwareDescription:
    """A HAT with a vessel model merged on top: everything a node needs to build its drivers."""

    hat_version: str
    model: ModelInfo
    i2c: I2CWiring
    pwm: PwmLayout
    adc: dict[str, AdcInput]
    leds: LedDriver
    temperature: TemperatureSensor
    gpio: GpioPins
    vessel: Vessel
    safety: SafetyLimits
    sources: tuple[str, ...]

    def i2c_devices(self) -> dict[int, str]:
        """Address -> chip kind, for a bus scan check or for wiring the simulated bus."""
        return _i2c_devices(self.adc, self.leds, self.temperature)


def _i2c_devices(adc: dict[str, AdcInput], leds: LedDriver, temperature: TemperatureSensor) -> dict[int, str]:
    out = {a.address: a.chip for a in adc.values()}
    out[leds.address] = leds.chip
    out[temperature.address] = temperature.chip
    return dict(sorted(out.items()))


# =============================================================================================
# Errors
# =============================================================================================


@attrs.frozen(kw_only=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str
    hint: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top level)'}: {self.message}; {self.hint}"


class HardwareDescriptionError(ValueError):
    """Every problem found in one HAT+model pair; ``problems`` has them as structured values."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.errors = [str(p) for p in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid hardware description ({count}):\n" + "\n".join(f"  {e}" for e in self.errors))


# =============================================================================================
# YAML with locations
# =============================================================================================


@attrs.frozen
class _Node:
    """A parsed YAML value that remembers where it came from (file, line), through merges."""

    value: Any  # dict[str, _Node] | list[_Node] | scalar
    sources: tuple[tuple[str, int], ...]

    @property
    def file(self) -> str:
        return self.sources[-1][0]

    @property
    def line(self) -> int:
        return self.sources[-1][1]


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, file: str, line: int | None, path: str, message: str, hint: str) -> None:
        self.items.append(Problem(file=file, line=line, path=path, message=message, hint=hint))

    def at(self, node: _Node, path: str, message: str, hint: str) -> None:
        self.add(node.file, node.line, path, message, hint)


def _read_yaml(file: Traversable | Path, label: str, problems: _Problems) -> _Node | None:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        problems.add(label, None, "", f"cannot read the file ({e.strerror or e})", "check that it exists and is readable")
        return None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        problems.add(
            label, mark.line + 1 if mark else None, "", f"not valid YAML: {problem}",
            "fix the syntax at that line (indentation, a missing colon, an unclosed bracket)",
        )
        return None
    try:
        if root is None:
            problems.add(label, 1, "", "the file is empty", f"start it with `schema: {SCHEMA_VERSION}` and its sections")
            return None
        return _to_node(root, label, root.start_mark.line + 1, loader, problems, "")
    finally:
        loader.dispose()


def _to_node(node: yaml.Node, label: str, line: int, loader: yaml.SafeLoader, problems: _Problems, path: str) -> _Node:
    if isinstance(node, yaml.MappingNode):
        items: dict[str, _Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            child_path = _join(path, key)
            if key in items:
                problems.add(label, key_line, child_path, f"{key!r} appears twice in this mapping", "keep one of them")
                continue
            items[key] = _to_node(value_node, label, key_line, loader, problems, child_path)
        return _Node(items, ((label, line),))
    if isinstance(node, yaml.SequenceNode):
        return _Node(
            [_to_node(item, label, item.start_mark.line + 1, loader, problems, f"{path}[{i}]") for i, item in enumerate(node.value)],
            ((label, line),),
        )
    return _Node(loader.construct_object(node, deep=True), ((label, line),))


def _merge(base: _Node, over: _Node) -> _Node:
    """Deep merge: mappings merge key by key, anything else in ``over`` replaces ``base``."""
    if isinstance(base.value, dict) and isinstance(over.value, dict):
        merged = dict(base.value)
        for key, value in over.value.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return _Node(merged, base.sources + over.sources)
    return over


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# =============================================================================================
# Schema: the shape of a merged description
# =============================================================================================


@attrs.frozen
class _Scalar:
    kind: str  # int | number | str | version | choice
    example: str
    doc: str
    required: bool = True
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    hexadecimal: bool = False
    range_hint: str = ""


@attrs.frozen
class _List:
    item: _Scalar
    example: str
    doc: str
    required: bool = True


@attrs.frozen
class _Record:
    """A mapping with a fixed set of keys."""

    fields: dict[str, Any]
    doc: str
    example: str = "{...}"
    required: bool = True


@attrs.frozen
class _Table:
    """A mapping whose keys are names chosen by the file (channels, signals)."""

    value: Any
    doc: str
    key_pattern: str
    key_hint: str
    required_keys: tuple[str, ...] = ()
    example: str = "{...}"
    required: bool = True


def _pin(doc: str, example: str, required: bool = True) -> _Scalar:
    low, high = BCM_PIN_RANGE
    return _Scalar("int", example, doc, required, low, high, range_hint=f"use a BCM GPIO number on the 40-pin header, {low}-{high}")


def _address(doc: str, example: str) -> _Scalar:
    low, high = I2C_ADDRESS_RANGE
    hint = f"use a 7-bit I2C address from 0x{low:02X} to 0x{high:02X}, written in hex like 0x48"
    return _Scalar("int", example, doc, True, low, high, hexadecimal=True, range_hint=hint)


def _chip(choices: Iterable[str], doc: str, example: str) -> _Scalar:
    return _Scalar("choice", example, doc, choices=tuple(choices))


def _celsius(doc: str, example: str) -> _Scalar:
    return _Scalar("number", example, doc, True, -20, 150, range_hint="use a plate temperature in °C")


_SCHEMA = _Record(
    doc="a HAT or model description",
    fields={
        "schema": _Scalar(
            "int", str(SCHEMA_VERSION), "file format version", True, SCHEMA_VERSION, SCHEMA_VERSION,
            range_hint=f"this loader reads schema {SCHEMA_VERSION}",
        ),
        "hat": _Record(
            doc="which HAT this file describes",
            example='{version: "1.2", description: ...}',
            fields={
                "version": _Scalar("version", '"1.2"', "HAT version, the file's name"),
                "description": _Scalar("str", "Pioreactor HAT 1.2", "a human-readable name", required=False),
            },
        ),
        "model": _Record(
            doc="which vessel model this file describes",
            example='{name: pioreactor_40ml, version: "1.5", display_name: ...}',
            fields={
                "name": _Scalar("str", "pioreactor_40ml", "model name"),
                "version": _Scalar("version", '"1.5"', "model version"),
                "display_name": _Scalar("str", '"Pioreactor 40ml, v1.5"', "name shown to people"),
            },
        ),
        "i2c": _Record(
            doc="the I2C bus the HAT's chips sit on",
            example="{bus: 1, sda: 2, scl: 3}",
            fields={
                "bus": _Scalar("int", "1", "Linux bus number (/dev/i2c-N)", True, 0, 255),
                "sda": _pin("I2C data pin", "2"),
                "scl": _pin("I2C clock pin", "3"),
            },
        ),
        "pwm": _Record(
            doc="PWM outputs",
            fields={
                "hardware_pins": _List(_pin("a hardware PWM pin", "12"), "[12, 13]", "pins that use hardware PWM"),
                "channels": _Table(
                    _Record(
                        doc="one PWM output",
                        example="{connector: 2, pin: 13, hz: 250}",
                        fields={
                            "connector": _Scalar(
                                "int", "1", "the HAT's PWM connector label", True, 1, 16,
                                range_hint="use the connector number printed on the HAT, 1-5",
                            ),
                            "pin": _pin("BCM pin of this output", "17"),
                            "hz": _Scalar(
                                "number", "250", "PWM frequency in Hz", True, 0.1, 100_000,
                                range_hint="use a frequency in Hz, e.g. 200 for stirring, 250 for pumps, 16 for the heater",
                            ),
                        },
                    ),
                    doc="PWM channel name -> connector, pin and frequency",
                    key_pattern=r"[a-z][a-z0-9_]*",
                    key_hint="channel names are lower_case words such as stirring or alt_media",
                    required_keys=REQUIRED_PWM_CHANNELS,
                    example="{stirring: {connector: 1, pin: 17, hz: 200}}",
                ),
            },
        ),
        "adc": _Table(
            _Record(
                doc="one analog signal",
                example="{chip: pico, address: 0x2C, channel: 2}",
                fields={
                    "chip": _chip(ADC_CHIP_INPUTS, "ADC chip kind", "pico"),
                    "address": _address("the ADC's I2C address", "0x48"),
                    "channel": _Scalar("int", "0", "input on that chip", True, 0, 7),
                },
            ),
            doc="analog signal -> the ADC chip, address and input that converts it",
            key_pattern="|".join(REQUIRED_ADC_SIGNALS + OPTIONAL_ADC_SIGNALS),
            key_hint=f"signals are {', '.join(REQUIRED_ADC_SIGNALS + OPTIONAL_ADC_SIGNALS)}",
            required_keys=REQUIRED_ADC_SIGNALS,
            example="{pd1: {chip: pico, address: 0x2C, channel: 2}}",
        ),
        "leds": _Record(
            doc="the LED driver",
            example="{chip: pico, address: 0x2C, channels: {A: 0, B: 1, C: 2, D: 3}, ir: A}",
            fields={
                "chip": _chip(LED_CHIP_OUTPUTS, "LED driver chip kind", "pico"),
                "address": _address("the LED driver's I2C address", "0x2C"),
                "channels": _Table(
                    _Scalar("int", "0", "output on the LED driver chip", True, 0, 7),
                    doc="LED pocket -> output on the chip",
                    key_pattern="[A-D]",
                    key_hint="LED pockets are A, B, C and D",
                    required_keys=LED_POCKETS,
                    example="{A: 0, B: 1, C: 2, D: 3}",
                ),
                "ir": _Scalar("choice", "A", "the pocket holding the IR LED", choices=LED_POCKETS),
            },
        ),
        "temperature": _Record(
            doc="the heater-plate temperature sensor",
            example="{chip: tmp1075, address: 0x4F}",
            fields={
                "chip": _chip(TEMPERATURE_CHIPS, "sensor chip kind", "tmp1075"),
                "address": _address("the sensor's I2C address", "0x4F"),
            },
        ),
        "gpio": _Record(
            doc="single GPIO pins",
            example="{hall_sensor: 21, status_led: 23, button: 4}",
            fields={
                "hall_sensor": _pin("stirring hall-sensor input", "21"),
                "status_led": _pin("PCB status LED", "23"),
                "button": _pin("PCB button", "4"),
                "mcu_swclk": _pin("SWD clock to the HAT MCU", "25", required=False),
                "mcu_swdio": _pin("SWD data to the HAT MCU", "24", required=False),
            },
        ),
        "vessel": _Record(
            doc="the vessel's volumes",
            example="{capacity_ml: 40, max_fill_ml: 36, default_efflux_tube_ml: 15}",
            fields={
                "capacity_ml": _Scalar("number", "40", "vessel capacity in mL", True, 1, 10_000),
                "max_fill_ml": _Scalar("number", "36", "volume at which dosing stops, mL", True, 1, 10_000),
                "default_efflux_tube_ml": _Scalar("number", "15", "volume the waste tube leaves behind, mL", True, 0, 10_000),
                "diameter_mm": _Scalar("number", "27", "inner diameter, mm", False, 1, 1_000),
            },
        ),
        "safety": _Record(
            doc="limits the drivers enforce",
            example="{heater_reduce_above_c: 78, heater_disable_above_c: 80, heater_shutdown_above_c: 85, "
            "ir_led_max_intensity_pct: 90}",
            fields={
                "heater_reduce_above_c": _celsius("heater duty is cut to 90 % above this plate temperature", "78"),
                "heater_disable_above_c": _celsius("heater is forced off above this plate temperature", "80"),
                "heater_shutdown_above_c": _celsius("the node powers off above this plate temperature", "85"),
                "ir_led_max_intensity_pct": _Scalar(
                    "number", "90", "highest IR LED intensity, percent", True, 0, 100, range_hint="use a percentage from 0 to 100"
                ),
            },
        ),
    },
)

_MISSING = object()


class _Checker:
    """Walks a merged node tree against the schema; returns plain values and records locations."""

    def __init__(self, problems: _Problems, locate_missing: Callable[[_Node, str, str], tuple[str, int]]) -> None:
        self.problems = problems
        self.where: dict[str, tuple[str, int]] = {}
        self._locate_missing = locate_missing

    def check(self, node: _Node, schema: Any, path: str) -> Any:
        self.where[path] = (node.file, node.line)
        if isinstance(schema, _Scalar):
            return self._scalar(node, schema, path)
        if isinstance(schema, _List):
            if not isinstance(node.value, list):
                self.problems.at(
                    node,
                    path,
                    f"expected a list ({schema.doc}), got {_describe(node.value)}",
                    f"write e.g. `{_leaf(path)}: {schema.example}`",
                )
                return _MISSING
            values = [self.check(item, schema.item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return [v for v in values if v is not _MISSING]
        if not isinstance(node.value, dict):
            self.problems.at(
                node,
                path,
                f"expected a mapping ({schema.doc}), got {_describe(node.value)}",
                f"write e.g. `{_leaf(path)}: {schema.example}`",
            )
            return _MISSING
        if isinstance(schema, _Record):
            return self._record(node, schema, path)
        return self._table(node, schema, path)

    def _record(self, node: _Node, schema: _Record, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, child in node.value.items():
            child_path = _join(path, key)
            if key not in schema.fields:
                allowed = sorted(schema.fields)
                close = difflib.get_close_matches(key, allowed, n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                self.problems.at(child, child_path, f"unknown key {key!r}", f"{guess}allowed keys here are: {', '.join(allowed)}")
                continue
            value = self.check(child, schema.fields[key], child_path)
            if value is not _MISSING:
                out[key] = value
        for key, field in schema.fields.items():
            if field.required and key not in node.value:
                self._missing(node, path, key, field)
        return out

    def _table(self, node: _Node, schema: _Table, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, child in node.value.items():
            child_path = _join(path, key)
            if not re.fullmatch(schema.key_pattern, key):
                close = difflib.get_close_matches(key, list(schema.required_keys), n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                self.problems.at(child, child_path, f"unknown name {key!r}", f"{guess}{schema.key_hint}")
                continue
            value = self.check(child, schema.value, child_path)
            if value is not _MISSING:
                out[key] = value
        for key in schema.required_keys:
            if key not in node.value:
                self._missing(node, path, key, schema.value)
        return out

    def _missing(self, node: _Node, path: str, key: str, field: Any) -> None:
        file, line = self._locate_missing(node, path, key)
        others = sorted({f for f, _ in node.sources if f != file})
        neither = f" (nor does {', '.join(others)})" if others else ""
        self.problems.add(file, line, _join(path, key), f"missing required entry {key!r}: {field.doc}{neither}", f"add `{key}: {field.example}`")

    def _scalar(self, node: _Node, schema: _Scalar, path: str) -> Any:
        value = node.value
        key = _leaf(path)

        def bad(message: str, hint: str) -> Any:
            self.problems.at(node, path, message, hint)
            return _MISSING

        if isinstance(value, (dict, list)):
            return bad(f"expected a single value ({schema.doc}), got {_describe(value)}", f"write e.g. `{key}: {schema.example}`")
        if schema.kind == "version":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return bad(f"version {value!r} was read as a number", f'quote it so "1.10" and "1.1" stay different: `{key}: "{value}"`')
            if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)+", value):
                return bad(f"{value!r} is not a version like \"1.2\"", f"write e.g. `{key}: {schema.example}`")
            return value
        if schema.kind == "str":
            if not isinstance(value, str) or not value.strip():
                return bad(f"expected text ({schema.doc}), got {_describe(value)}", f"write e.g. `{key}: {schema.example}`")
            return value
        if schema.kind == "choice":
            if value not in schema.choices:
                close = difflib.get_close_matches(str(value), list(schema.choices), n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                return bad(f"{value!r} is not a known {schema.doc}", f"{guess}use one of: {', '.join(schema.choices)}")
            return value
        is_int = isinstance(value, int) and not isinstance(value, bool)
        is_number = is_int or isinstance(value, float) and math.isfinite(value)
        if schema.kind == "int" and not is_int:
            return bad(f"expected a whole number ({schema.doc}), got {_describe(value)}", f"write e.g. `{key}: {schema.example}`")
        if schema.kind == "number" and not is_number:
            return bad(f"expected a number ({schema.doc}), got {_describe(value)}", f"write e.g. `{key}: {schema.example}`")
        if (schema.low is not None and value < schema.low) or (schema.high is not None and value > schema.high):
            shown = f"0x{value:02X}" if schema.hexadecimal and is_int else f"{value!r}"
            limits = f"{_fmt(schema.low, schema.hexadecimal)}-{_fmt(schema.high, schema.hexadecimal)}"
            return bad(f"{shown} is out of range for {schema.doc}", schema.range_hint or f"use a value from {limits}")
        return float(value) if schema.kind == "number" else value


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return f"{type(value).__name__} {value!r}"


def _fmt(x: float | None, hexadecimal: bool) -> str:
    if x is None:
        return "?"
    return f"0x{int(x):02X}" if hexadecimal else f"{x:g}"


def _leaf(path: str) -> str:
    return re.split(r"[.\[]", path)[-1].rstrip("]") if path else "key"


# =============================================================================================
# Checks across fields
# =============================================================================================


class _CrossChecks:
    """Rules that involve more than one value: uniqueness, ranges that depend on the chip, orders."""

    def __init__(self, data: dict[str, Any], where: dict[str, tuple[str, int]], problems: _Problems, later_file: str | None) -> None:
        self.data = data
        self.where = where
        self.problems = problems
        self.later_file = later_file

    def err(self, path: str, message: str, hint: str) -> None:
        file, line = self.where.get(path) or self.where.get(path.rsplit(".", 1)[0], ("?", 0))
        self.problems.add(file, line, path, message, hint)

    def loc(self, path: str) -> str:
        file, line = self.where.get(path, ("?", 0))
        return f"{path} ({Path(file).name}:{line})"

    def run(self) -> None:
        self.pins()
        self.hardware_pwm()
        self.connectors()
        self.adc_channels()
        self.addresses()
        self.leds()
        self.safety()
        self.vessel()

    def pins(self) -> None:
        used: list[tuple[int, str]] = []
        i2c = self.data.get("i2c", {})
        used += [(i2c[k], f"i2c.{k}") for k in ("sda", "scl") if k in i2c]
        for name, ch in self.data.get("pwm", {}).get("channels", {}).items():
            if "pin" in ch:
                used.append((ch["pin"], f"pwm.channels.{name}.pin"))
        used += [(pin, f"gpio.{k}") for k, pin in self.data.get("gpio", {}).items()]
        first: dict[int, str] = {}
        for pin, path in used:
            if pin in first:
                self.err(path, f"GPIO {pin} is already used by {self.loc(first[pin])}", "each pin drives one thing; check the pinout for this HAT")
            else:
                first[pin] = path

    def hardware_pwm(self) -> None:
        pins = self.data.get("pwm", {}).get("hardware_pins", [])
        blocks: dict[str, int] = {}
        for i, pin in enumerate(pins):
            path = f"pwm.hardware_pins[{i}]"
            block = HARDWARE_PWM_BLOCKS.get(pin)
            if block is None:
                self.err(path, f"GPIO {pin} has no hardware PWM", "hardware PWM exists only on GPIO 12, 13, 18 and 19")
            elif block in blocks:
                self.err(
                    path,
                    f"GPIO {pin} shares {block} with GPIO {blocks[block]}",
                    "two pins on one PWM block cannot run different frequencies; list only one of them",
                )
            else:
                blocks[block] = pin

    def connectors(self) -> None:
        first: dict[int, str] = {}
        for name, ch in self.data.get("pwm", {}).get("channels", {}).items():
            connector = ch.get("connector")
            if connector is None:
                continue
            path = f"pwm.channels.{name}.connector"
            if connector in first:
                self.err(path, f"connector {connector} is also assigned to {self.loc(first[connector])}", "each HAT connector drives one channel")
            else:
                first[connector] = path

    def adc_channels(self) -> None:
        seen: dict[tuple[str, int, int], str] = {}
        for signal, spec in self.data.get("adc", {}).items():
            if not {"chip", "address", "channel"} <= spec.keys():
                continue
            inputs = ADC_CHIP_INPUTS[spec["chip"]]
            path = f"adc.{signal}.channel"
            if spec["channel"] >= inputs:
                valid = "0" if inputs == 1 else f"0-{inputs - 1}"
                self.err(path, f"{spec['chip']} has no input {spec['channel']}", f"an {spec['chip']} has input{'s' if inputs > 1 else ''} {valid}")
                continue
            key = (spec["chip"], spec["address"], spec["channel"])
            if key in seen:
                self.err(
                    path,
                    f"{spec['chip']} 0x{spec['address']:02X} input {spec['channel']} is already {self.loc(seen[key])}",
                    "each signal needs its own ADC input",
                )
            else:
                seen[key] = path

    def addresses(self) -> None:
        claims: dict[int, list[tuple[str, str]]] = {}
        for signal, spec in self.data.get("adc", {}).items():
            if "address" in spec and "chip" in spec:
                claims.setdefault(spec["address"], []).append((spec["chip"], f"adc.{signal}.address"))
        for section in ("leds", "temperature"):
            spec = self.data.get(section, {})
            if "address" in spec and "chip" in spec:
                claims.setdefault(spec["address"], []).append((spec["chip"], f"{section}.address"))
        for address, owners in claims.items():
            if len({chip for chip, _ in owners}) < 2:
                continue
            # Report once per address, at the claim from the layer loaded last (the model overrides).
            later = [c for c in owners if self.where.get(c[1], ("",))[0] == self.later_file]
            chip, path = (later or owners)[-1]
            others = ", ".join(f"{other} at {self.loc(p)}" for other, p in owners if other != chip)
            self.err(
                path,
                f"0x{address:02X} is claimed by {chip} here and by {others}",
                "two chips cannot share an address on one bus; move one, or pair this model with a HAT whose chips sit elsewhere",
            )

    def leds(self) -> None:
        leds = self.data.get("leds", {})
        outputs = LED_CHIP_OUTPUTS.get(leds.get("chip", ""), 8)
        first: dict[int, str] = {}
        for pocket, output in leds.get("channels", {}).items():
            path = f"leds.channels.{pocket}"
            if output >= outputs:
                self.err(path, f"{leds['chip']} has no output {output}", f"a {leds['chip']} has outputs 0-{outputs - 1}")
            elif output in first:
                self.err(path, f"output {output} is already pocket {self.loc(first[output])}", "each LED pocket needs its own output")
            else:
                first[output] = path

    def safety(self) -> None:
        s = self.data.get("safety", {})
        order = ("heater_reduce_above_c", "heater_disable_above_c", "heater_shutdown_above_c")
        for lower, higher in zip(order, order[1:]):
            if lower in s and higher in s and not s[lower] < s[higher]:
                self.err(
                    f"safety.{higher}",
                    f"{higher} ({s[higher]:g}) must be above {lower} ({s[lower]:g})",
                    "the tiers escalate: reduce < disable < shutdown",
                )

    def vessel(self) -> None:
        v = self.data.get("vessel", {})
        if "max_fill_ml" in v and "capacity_ml" in v and v["max_fill_ml"] > v["capacity_ml"]:
            self.err(
                "vessel.max_fill_ml",
                f"max fill {v['max_fill_ml']:g} mL exceeds the capacity {v['capacity_ml']:g} mL",
                "max fill must leave headroom below capacity",
            )
        if "default_efflux_tube_ml" in v and "max_fill_ml" in v and v["default_efflux_tube_ml"] > v["max_fill_ml"]:
            self.err(
                "vessel.default_efflux_tube_ml",
                f"efflux level {v['default_efflux_tube_ml']:g} mL is above max fill {v['max_fill_ml']:g} mL",
                "the waste tube must sit below the max fill level",
            )


# =============================================================================================
# Loading
# =============================================================================================


def data_directory() -> Traversable:
    """Where the shipped ``hats/`` and ``models/`` live (package data of ``actors.hardware``)."""
    return resources.files("actors.hardware")


def _root(directory: DataDir | None) -> Traversable:
    if directory is None:
        return data_directory()
    return Path(directory) if isinstance(directory, str) else directory


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[._]", version))


def _stems(folder: Traversable) -> list[str]:
    if not folder.is_dir():
        return []
    return [entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml") and entry.is_file()]


def available_hats(directory: DataDir | None = None) -> list[str]:
    """HAT versions with a description file, oldest first."""
    return sorted(_stems(_root(directory) / "hats"), key=_version_key)


def available_models(directory: DataDir | None = None) -> list[str]:
    """Model ids (``<name>_<version>``) with a description file."""
    return sorted(_stems(_root(directory) / "models"), key=_version_key)


def _layer(root: Traversable, kind: str, stem: str, available: list[str], problems: _Problems) -> _Node | None:
    folder = "hats" if kind == "hat" else "models"
    file = root / folder / f"{stem}.yaml"
    label = str(file)
    if not file.is_file():
        what = "HAT version" if kind == "hat" else "model"
        problems.add(label, None, "", f"no description for {what} {stem!r}", f"available: {', '.join(available) or 'none'}")
        return None
    node = _read_yaml(file, label, problems)
    if node is None:
        return None
    if not isinstance(node.value, dict):
        problems.at(
            node,
            "",
            f"expected a mapping of sections, got {_describe(node.value)}",
            f"start with `schema: {SCHEMA_VERSION}` and sections such as pwm: or vessel:",
        )
        return None
    sections = dict(node.value)
    if "schema" not in sections:
        problems.add(label, 1, "schema", "missing the format version", f"add `schema: {SCHEMA_VERSION}` at the top of the file")
    foreign = MODEL_ONLY_SECTIONS if kind == "hat" else HAT_ONLY_SECTIONS
    for section in foreign:
        if section in sections:
            home = "a model file (models/<model>.yaml)" if kind == "hat" else "the HAT file (hats/<version>.yaml)"
            problems.at(sections.pop(section), section, f"section {section!r} does not belong in a {kind} file", f"move it to {home}")
    return _Node(sections, node.sources)


def _check_identity(data: dict[str, Any], where: dict[str, tuple[str, int]], hat_version: str | None, model: str | None, problems: _Problems) -> None:
    hat = data.get("hat", {})
    if hat_version is not None and "version" in hat and hat["version"] != hat_version:
        file, line = where["hat.version"]
        problems.add(
            file,
            line,
            "hat.version",
            f"the file says {hat['version']!r} but is named {hat_version}.yaml",
            f'make them agree: `version: "{hat_version}"` or rename the file',
        )
    info = data.get("model", {})
    if model is not None and "name" in info and "version" in info and f"{info['name']}_{info['version']}" != model:
        file, line = where["model.name"]
        problems.add(
            file,
            line,
            "model",
            f"name/version {info['name']!r}/{info['version']!r} do not match the file name {model}.yaml",
            "the file must be named <name>_<version>.yaml",
        )


def _check_tree(
    tree: _Node,
    sections: Iterable[str],
    owners: dict[str, str],
    hat_version: str | None,
    model: str | None,
    problems: _Problems,
) -> dict[str, Any]:
    wanted = tuple(sections)
    schema = _Record(doc=_SCHEMA.doc, fields={k: v for k, v in _SCHEMA.fields.items() if k in wanted})

    def locate_missing(node: _Node, path: str, key: str) -> tuple[str, int]:
        if path == "":
            owner_file = owners.get(key)
            for file, line in node.sources:
                if file == owner_file:
                    return file, line
        return node.sources[0]

    checker = _Checker(problems, locate_missing)
    data = checker.check(tree, schema, "")
    data = data if isinstance(data, dict) else {}
    _check_identity(data, checker.where, hat_version, model, problems)
    _CrossChecks(data, checker.where, problems, tree.sources[-1][0]).run()
    return data


_HAT_SECTIONS = ("schema", "hat", "i2c", "pwm", "adc", "leds", "temperature", "gpio")
_ALL_SECTIONS = tuple(_SCHEMA.fields)


def load(hat_version: str, model: str, *, directory: DataDir | None = None) -> HardwareDescription:
    """The validated description of ``model`` (e.g. ``"pioreactor_40ml_1.5"``) on HAT ``hat_version``.

    ``directory`` holds ``hats/`` and ``models/``; by default the files shipped in this package.
    Raises :class:`HardwareDescriptionError` listing every problem found.
    """
    if directory is None:
        return _load_packaged(hat_version, model)
    return _load(_root(directory), hat_version, model)


@functools.lru_cache(maxsize=None)
def _load_packaged(hat_version: str, model: str) -> HardwareDescription:
    return _load(data_directory(), hat_version, model)


def _load(root: Traversable, hat_version: str, model: str) -> HardwareDescription:
    problems = _Problems()
    hat_node = _layer(root, "hat", hat_version, available_hats(root), problems)
    model_node = _layer(root, "model", model, available_models(root), problems)
    if hat_node is None or model_node is None:
        raise HardwareDescriptionError(problems.items)
    owners = {s: model_node.file for s in MODEL_ONLY_SECTIONS} | {s: hat_node.file for s in _HAT_SECTIONS}
    data = _check_tree(_merge(hat_node, model_node), _ALL_SECTIONS, owners, hat_version, model, problems)
    if problems.items:
        raise HardwareDescriptionError(problems.items)
    parts = _build_hat_parts(data)
    info = data["model"]
    return HardwareDescription(
        hat_version=hat_version,
        model=ModelInfo(id=model, name=info["name"], version=info["version"], display_name=info["display_name"]),
        vessel=Vessel(**data["vessel"]),
        safety=SafetyLimits(**data["safety"]),
        sources=(hat_node.file, model_node.file),
        **parts,
    )


def load_hat(hat_version: str, *, directory: DataDir | None = None) -> HatDescription:
    """A HAT on its own, without a model: what the PWM driver needs before any vessel is known."""
    root = _root(directory)
    problems = _Problems()
    node = _layer(root, "hat", hat_version, available_hats(root), problems)
    if node is None:
        raise HardwareDescriptionError(problems.items)
    data = _check_tree(node, _HAT_SECTIONS, {s: node.file for s in _HAT_SECTIONS}, hat_version, None, problems)
    if problems.items:
        raise HardwareDescriptionError(problems.items)
    return HatDescription(version=hat_version, description=data["hat"].get("description", ""), sources=(node.file,), **_build_hat_parts(data))


def _build_hat_parts(data: dict[str, Any]) -> dict[str, Any]:
    hardware_pins = tuple(data["pwm"]["hardware_pins"])
    channels = {
        name: PwmChannel(name=name, connector=ch["connector"], pin=ch["pin"], hz=ch["hz"], hardware=ch["pin"] in hardware_pins)
        for name, ch in data["pwm"]["channels"].items()
    }
    leds = data["leds"]
    return {
        "i2c": I2CWiring(**data["i2c"]),
        "pwm": PwmLayout(channels=channels, hardware_pins=hardware_pins),
        "adc": {signal: AdcInput(signal=signal, **spec) for signal, spec in data["adc"].items()},
        "leds": LedDriver(chip=leds["chip"], address=leds["address"], channels=dict(leds["channels"]), ir=leds["ir"]),
        "temperature": TemperatureSensor(**data["temperature"]),
        "gpio": GpioPins(**data["gpio"]),
    }


# =============================================================================================
# Constants the running PWM driver imports (HAT 1.2)
# =============================================================================================

_HAT_1_2 = load_hat("1.2")

# PWM channel name -> BCM GPIO pin: stirring 17, media 13, alt_media 16, waste 12, heater 18.
PWM_PINS: dict[str, int] = _HAT_1_2.pwm.pins()
HALL_SENSOR_PIN: int = _HAT_1_2.gpio.hall_sensor
