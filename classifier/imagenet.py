"""Which ImageNet-1k classes a label names: the classes whose probabilities, from the backbone's own ImageNet
classifier, are a label's prior (see `classifier.model`).

A class map is `{label: [ImageNet class index, ...]}`; an empty list means "no ImageNet class: learned from its
examples alone". The automatic map (`classes_for_label`):
- a few labels name ImageNet groups that no category name says: `cat` is the five domestic cats (281-285),
  `dog` the 118 dog breeds (151-268), `rabbit` the wood rabbit, hare and Angora (330-332);
- any other label matches the categories whose name is the label or ends with it as whole words (`mug` → coffee
  mug, `car` → sports car, freight car, ...; plurals tried as singulars), i.e. the label is the name's head noun.
  WordNet would give the true hyponyms, but no package ships its hierarchy offline with the 1000 synsets; the
  head-noun rule errs towards too few classes, and the map is a task parameter a user can edit.

As text (the task parameter): `cat: 281-285; dog: 151-268; hamster: 333; mylabel: none`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence

NUM_CLASSES = 1000
GROUPS: dict[str, range] = {
    "cat": range(281, 286),
    "kitten": range(281, 286),
    "dog": range(151, 269),
    "puppy": range(151, 269),
    "rabbit": range(330, 333),
    "bunny": range(330, 333),
}
NONE = "none"
MAX_TEXT = 20_000
MAX_LABEL = 200

ClassMap = dict[str, list[int]]


@functools.cache
def category_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k category names in class-index order (bundled with torchvision, no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _words(text: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", text.lower()).split())


def _singulars(label: str) -> list[str]:
    forms = [label]
    if label.endswith("ies") and len(label) > 4:
        forms.append(label[:-3] + "y")
    if label.endswith("es") and len(label) > 3:
        forms.append(label[:-2])
    if label.endswith("s") and not label.endswith("ss") and len(label) > 2:
        forms.append(label[:-1])
    return forms


def classes_for_label(label: str) -> list[int]:
    """ImageNet class indices the label names (empty: none); see the module docstring for the rule."""
    for form in _singulars(_words(label)):
        if form in GROUPS:
            return list(GROUPS[form])
        names = (_words(name) for name in category_names())
        found = [index for index, name in enumerate(names) if name == form or name.endswith(f" {form}")]
        if found:
            return found
    return []


def resolve_class_map(
    classes: Iterable[str], given: Mapping[str, Sequence[int]], inherited: Mapping[str, Sequence[int]] = {}
) -> ClassMap:
    """The map of `classes`: each label's entry in `given` (what the user set), else in `inherited` (the parent
    model's), else the automatic one."""
    resolved: ClassMap = {}
    for label in classes:
        for source in (given, inherited):
            if label in source:
                resolved[label] = sorted(set(source[label]))
                break
        else:
            resolved[label] = classes_for_label(label)
    return resolved


def priors_of(class_map: Mapping[str, Sequence[int]], classes: Sequence[str]) -> list[list[int]]:
    """The map's ImageNet classes of each of `classes`, in their order (`ImageClassifier.set_priors`' argument)."""
    return [list(class_map.get(label, [])) for label in classes]


def format_class_map(class_map: Mapping[str, Sequence[int]]) -> str:
    """The map as text, runs of indices as ranges: `cat: 281-285; dog: 151-268; mylabel: none`."""
    return "; ".join(f"{label}: {_ranges(indices)}" for label, indices in class_map.items())


def _ranges(indices: Sequence[int]) -> str:
    if not indices:
        return NONE
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def parse_class_map(text: str) -> ClassMap:
    """Parse `format_class_map`'s text; a clear ValueError for anything else."""
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"class_map is {len(text)} characters long; at most {MAX_TEXT}.")
    parsed: ClassMap = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        label, colon, spec = entry.rpartition(":")
        label = label.strip()
        if not colon or not label or len(label) > MAX_LABEL:
            raise ValueError(f"class_map entry {entry[:80]!r} is not 'label: indices' (e.g. 'cat: 281-285').")
        if label in parsed:
            raise ValueError(f"class_map names {label!r} twice.")
        parsed[label] = _parse_indices(label, spec.strip())
    return parsed


def _parse_indices(label: str, spec: str) -> list[int]:
    if spec.lower() in (NONE, ""):
        return []
    indices: set[int] = set()
    for part in (piece.strip() for piece in spec.split(",")):
        match = re.fullmatch(r"(\d{1,4})(?:\s*-\s*(\d{1,4}))?", part)
        if not match:
            raise ValueError(f"class_map: {label!r} has {part[:40]!r}; give indices and ranges like '151-268, 281'.")
        low, high = int(match[1]), int(match[2] or match[1])
        if not low <= high < NUM_CLASSES:
            raise ValueError(f"class_map: {label!r} has {part!r}; classes are 0-{NUM_CLASSES - 1}, low to high.")
        indices.update(range(low, high + 1))
    return sorted(indices)
