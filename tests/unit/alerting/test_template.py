from __future__ import annotations

import pytest

from alerting.template import TemplateError, parse, render


@pytest.mark.parametrize(
    ("text", "labels", "value", "out"),
    [
        ("GPU {{ $labels.gpu.uuid }} lost", {"gpu.uuid": "GPU-1"}, 0, "GPU GPU-1 lost"),
        ("{{$labels.host.name}}/{{ $labels.xid }}", {"host.name": "n1", "xid": "79"}, 0, "n1/79"),
        ("value {{ $value }}", {}, 2.5, "value 2.5"),
        ('burn {{ $value | printf "%.1f" }}x', {}, 14.4321, "burn 14.4x"),
        ('{{ $value | printf "%d" }} errors', {}, 3.0, "3 errors"),
        ("missing {{ $labels.nope }}.", {}, 0, "missing ."),
        ("no placeholders", {}, 0, "no placeholders"),
    ],
)
def test_placeholders_are_substituted(text: str, labels: dict, value: float, out: str) -> None:
    assert render(text, labels, value) == out


@pytest.mark.parametrize(
    "text",
    [
        "{{ $labels }}",
        "{{ .Labels.x }}",
        '{{ $value | printf "%n" }}',
        "{{ range $x }}",
        "{{ $labels.x | toUpper }}",
        "{{ $value",
        "{{ __import__('os') }}",
    ],
)
def test_anything_else_is_refused_at_load(text: str) -> None:
    with pytest.raises(TemplateError):
        parse(text)
