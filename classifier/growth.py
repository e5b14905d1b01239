"""Class growth: add output rows for new classes without disturbing the classes a model already knows.

Old classes keep their index and their head row. Each new row starts as the mean of the old rows with its bias
lowered by `log(1 / NEW_CLASS_MAX_PROB)`. Its logit is then the mean of the old logits minus that margin, which
is below the largest old logit for every input, so right after growth, before any training:
- the predicted class (argmax) is the same as before for every input;
- each new class gets probability at most NEW_CLASS_MAX_PROB, and every old class probability p becomes
  p * (1 - total new probability), i.e. changes by at most (number of new classes) * NEW_CLASS_MAX_PROB;
- the old classes' probabilities relative to each other are exactly unchanged.
With priors (`classifier.model`) the head is the learned part of a mixture, P = g·prior + (1 - g)·softmax(head):
new classes start with no prior and the same bounds; `ImageClassifier.set_priors` then gives a new label that
names ImageNet classes their share at once (classifier.train does), so a photo of what it names is the new class
before any training.
A finite margin (unlike -inf) keeps the new rows trainable. It is a trade-off: with a bound of 1e-4 instead of
1e-2, a head trained on 8 new images recalled 88% instead of 95% of held-out images of the new class (generated
images, 10 epochs), because Adam moves the bias by about `lr` per step and the weights had to make up the gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from classifier.model import ImageClassifier

NEW_CLASS_MAX_PROB = 0.01


def merge_classes(old_classes: Sequence[str], incoming: Sequence[str]) -> list[str]:
    """Old classes in their order, then the classes not seen before, sorted."""
    known = set(old_classes)
    return list(old_classes) + sorted(set(incoming) - known)


def grow_head(
    model: ImageClassifier,
    old_classes: Sequence[str],
    new_classes: Sequence[str],
) -> ImageClassifier:
    """Resize `model.head` from `old_classes` to `new_classes` in place and return the model.

    `new_classes` is the complete new class list; it must start with `old_classes` in the same order
    (use `merge_classes` to build it). The new classes have no prior (`ImageClassifier.set_priors` gives them one).
    """
    old_classes, new_classes = list(old_classes), list(new_classes)
    if model.head.out_features != len(old_classes):
        raise ValueError(f"The head has {model.head.out_features} outputs but {len(old_classes)} old classes given.")
    if new_classes[: len(old_classes)] != old_classes:
        raise ValueError(
            f"New class list {new_classes} must start with the old classes {old_classes} in the same order."
        )
    if len(set(new_classes)) != len(new_classes):
        raise ValueError(f"Duplicate class names in {new_classes}.")
    added = len(new_classes) - len(old_classes)
    if added == 0:
        return model

    old = model.head
    head = nn.Linear(old.in_features, len(new_classes), device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        head.weight[: len(old_classes)] = old.weight
        head.bias[: len(old_classes)] = old.bias
        head.weight[len(old_classes) :] = old.weight.mean(dim=0, keepdim=True)
        head.bias[len(old_classes) :] = old.bias.mean() - math.log(1.0 / NEW_CLASS_MAX_PROB)
    priors = model.priors() + [[] for _ in range(added)]
    model.head = head
    model.set_priors(priors)
    return model
