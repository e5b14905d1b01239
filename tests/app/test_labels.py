import pytest

from app.labels import InvalidLabel, normalize_label


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rabbit", "rabbit"),
        ("  Rabbit\n", "rabbit"),
        ("GUINEA_PIG", "guinea_pig"),
        ("cat-2", "cat-2"),
        ("x", "x"),
        ("a" * 32, "a" * 32),
    ],
)
def test_valid_labels_are_normalised(text, expected):
    assert normalize_label(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("a" * 33, "33 characters; at most 32"),
        ("guinea pig", "' '"),
        ("../etc", "'.' '/'"),
        ("chat!", "'!'"),
        ("kätzchen", "'ä'"),
        ("tab\tbed", "'\\t'"),
    ],
)
def test_invalid_labels_are_refused_with_a_reason(text, message):
    with pytest.raises(InvalidLabel) as error:
        normalize_label(text)
    assert message in str(error.value)
