"""Config arguments after the colon: key=value items and bare words."""

import pytest

from configs import ctd, latency, lma
from configs.common import parse_arg


def test_key_value_items_are_cast_to_the_default_type():
    args = parse_arg("steps=5,name=x,flag=yes", steps=0, name="", flag=False)
    assert (args.steps, args.name, args.flag) == (5, "x", True)


def test_a_bare_word_sets_the_one_argument_whose_choices_hold_it():
    args = parse_arg("8b,steps=3", choices={"variant": ("tiny", "8b")}, variant="tiny", steps=0)
    assert (args.variant, args.steps) == ("8b", 3)


def test_a_bare_word_naming_a_boolean_argument_sets_it_true():
    assert parse_arg("fused", fused=False).fused is True


def test_experiment_configs_take_bare_words():
    assert ctd.get_config("8b").variant == "8b"
    assert ctd.get_config("tiny").variant == "tiny"
    assert lma.get_config("8b,encoder=teacher").variant == "8b"
    assert latency.get_config("small").size == "small"


@pytest.mark.parametrize("arg, message", [
    ("huge", r"'huge' must look like key=value or be one of the words \['8b', 'tiny'\]"),
    ("variant=huge", r"variant='huge' must be one of \['tiny', '8b'\]"),
    ("foo=1", r"unknown config argument 'foo'"),
])
def test_bad_arguments_are_refused_with_what_is_accepted(arg, message):
    with pytest.raises(ValueError, match=message):
        ctd.get_config(arg)


def test_a_word_in_two_arguments_choices_is_ambiguous():
    with pytest.raises(ValueError, match="ambiguous"):
        parse_arg("x", choices={"a": ("x",), "b": ("x", "y")}, a="", b="")
