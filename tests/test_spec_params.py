import pytest

from aeframe.errors import SpecError
from aeframe.contract.params import Param, non_default, resolve_params
from aeframe.planning.syntax import ComponentSpec, parse_combination, parse_component

SIZES = Param("sizes", "ints", (16, 32), "image side of each phase")
ICNR = Param("icnr", bool, False, "real ICNR initialisation")
MODE = Param("mode", str, "a", "which mode", choices=("a", "b"))
RATE = Param("rate", float, 0.1, "a rate")


def test_plain_name():
    assert parse_component("baseline") == ComponentSpec("baseline")


def test_list_value_keeps_its_commas():
    spec = parse_component("progressive-resizing[sizes=16,32,icnr=true]")
    assert spec.name == "progressive-resizing"
    assert spec.given_dict == {"sizes": "16,32", "icnr": "true"}


def test_combination_in_order_and_plus_inside_brackets():
    specs = parse_combination("pixel-shuffle+feature-loss[weights=a+b]+baseline")
    assert [s.name for s in specs] == ["pixel-shuffle", "feature-loss", "baseline"]
    assert specs[1].given_dict == {"weights": "a+b"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("baseline[", "unbalanced brackets"),
        ("baseline[latent]", "'latent' is not key=value"),
        ("baseline[=3]", "empty name"),
        ("base line", "malformed name"),
        ("", "empty technique name"),
        ("baseline[latent=1,latent=2]", "given twice"),
    ],
)
def test_malformed_specs_are_refused(text, message):
    with pytest.raises(SpecError, match=message):
        parse_combination(text)


def test_resolve_typed_values_and_defaults():
    values = resolve_params([SIZES, ICNR, MODE, RATE], {"sizes": "8,16,32", "icnr": "yes"}, "technique x")
    assert values == {"sizes": (8, 16, 32), "icnr": True, "mode": "a", "rate": 0.1}


def test_unknown_key_lists_close_matches_and_accepted():
    with pytest.raises(SpecError) as err:
        resolve_params([SIZES, ICNR], {"size": "16"}, "technique progressive-resizing")
    text = str(err.value)
    assert "technique progressive-resizing: unknown parameter 'size'" in text
    assert "did you mean sizes" in text and "it accepts: sizes, icnr" in text


@pytest.mark.parametrize(
    "given, message",
    [
        ({"sizes": "16,x"}, "bad value '16,x' for parameter 'sizes' (expected ints"),
        ({"icnr": "maybe"}, "bad value 'maybe' for parameter 'icnr' (expected bool"),
        ({"rate": "fast"}, "bad value 'fast' for parameter 'rate' (expected float"),
        ({"mode": "c"}, "mode=c is not allowed; choose one of a, b"),
    ],
)
def test_bad_values_are_refused(given, message):
    with pytest.raises(SpecError) as err:
        resolve_params([SIZES, ICNR, MODE, RATE], given, "technique t")
    assert message in str(err.value)


def test_non_default_formats_like_the_user_types():
    values = {"sizes": (8, 32), "icnr": False, "mode": "b", "rate": 0.1}
    assert non_default([SIZES, ICNR, MODE, RATE], values) == {"sizes": "8,32", "mode": "b"}


def test_param_needs_help_and_known_type():
    with pytest.raises(TypeError):
        Param("x", int, 1, "")
    with pytest.raises(TypeError):
        Param("x", list, [], "a list")
