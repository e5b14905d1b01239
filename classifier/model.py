"""The classifier: a backbone that embeds an image, its own ImageNet classifier as a prior, and a linear head.

The backbone's 1000-way ImageNet classifier (learned from 1.2 M images) knows the groups the labels name
(`classifier.imagenet`: `cat` → the 5 domestic cats, `dog` → the 118 breeds). Let π(x) be the ImageNet mass of
all the groups together and g(x) how far that is above a uniform guess (their share s of the 1000 classes):

    P(c | x) = g(x) · P_imagenet(S_c | x) / π(x)  +  (1 - g(x)) · softmax(head(embedding(x)))_c
    logit g(x) = logit π(x) - logit s

A label ImageNet does not know has no S_c and lives in the learned part alone. A photo ImageNet recognises as
one of the groups (π 0.57-0.97 on the real photos, g ≥ 0.9) follows ImageNet's split among them: "dog 99.5 %"
for four dogs, whatever the head learned from a few dozen images. An image it does not (the generated sample
images: π 0.01-0.05, g ≈ 0.1-0.3) is the head's to decide, as before the prior. g has no learned parameter:
a learned gate (a linear term on the embedding, started at 0) learned on the generated images to distrust the
prior and carried that to photos (median true-class probability on them 0.88 instead of 0.98, and 0.47 after a
growth retrain; `benchmarks/model_quality.py`). Also measured and dropped: the prior's log probability plus a
learned correction in one softmax, which lets ImageNet's opinion of images it does not know (noise of several
nats) into every logit, so the head learned generated images worse (0.82 instead of 1.0 in the full-mode test).
A head initialised from the ImageNet rows cannot express "any of 118 breeds" in one linear row.

The prior is an input to training, never its target: the ImageNet layer is frozen and sees the embedding
detached, so full fine-tuning cannot make the trunk raise π to fit the prior (it did: 0.45 accuracy). Groups
that overlap each count the shared mass, and the outputs are renormalised. `forward` returns log probabilities,
which every caller's softmax leaves as they are; without a mapped class it returns the head's logits as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from classifier.backbones import BackboneSpec, build_backbone
from classifier.imagenet import NUM_CLASSES


class ImageClassifier(nn.Module):
    def __init__(
        self,
        features: nn.Module,
        feature_dim: int,
        num_classes: int,
        spec: BackboneSpec,
        imagenet: nn.Linear | None = None,
        priors: Sequence[Sequence[int]] = (),
    ):
        super().__init__()
        self.features = features
        self.head = nn.Linear(feature_dim, num_classes)
        self.spec = spec
        # None: a model from before the prior (checkpoint format 1). Always frozen: the prior is never trained.
        self.imagenet = imagenet.requires_grad_(False) if imagenet is not None else None
        self.set_priors(priors or [[] for _ in range(num_classes)])

    def set_priors(self, priors: Sequence[Sequence[int]]) -> None:
        """ImageNet class indices of each class, in class order (an empty list: no prior for that class)."""
        if len(priors) != self.head.out_features:
            raise ValueError(f"{len(priors)} priors for {self.head.out_features} classes.")
        if any(priors) and self.imagenet is None:
            raise ValueError("This model has no ImageNet layer to take a prior from.")
        mapped = [index for index, members in enumerate(priors) if members]
        mask = torch.zeros(len(mapped), NUM_CLASSES, dtype=torch.bool)
        for row, index in enumerate(mapped):
            mask[row, list(priors[index])] = True
        device = self.head.weight.device
        in_groups = mask.any(0)
        share = in_groups.float().mean()
        # Not in the state dict: the class map (in the checkpoint) is the record, these are derived from it.
        self.register_buffer("prior_classes", torch.tensor(mapped, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("prior_mask", mask.to(device), persistent=False)
        self.register_buffer("in_groups", in_groups.to(device), persistent=False)
        # logit of the groups' share of the 1000 classes: the gate's "uniform guess" (see the module docstring)
        self.register_buffer("share_logit", torch.log(share / (1 - share)).to(device), persistent=False)

    def priors(self) -> list[list[int]]:
        """What `set_priors` was given."""
        priors: list[list[int]] = [[] for _ in range(self.head.out_features)]
        for row, index in enumerate(self.prior_classes.tolist()):
            priors[index] = self.prior_mask[row].nonzero().flatten().tolist()
        return priors

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def prior_terms(self, embedding: torch.Tensor) -> torch.Tensor | None:
        """What the prior contributes to each class, [N, 1 + mapped classes]: log(1 - g(x)) for the learned part,
        then log(g(x) P(S_c | x) / π(x)) of each mapped class; None without a mapped class. They depend on the
        embedding alone (the ImageNet layer is frozen), so head-mode training computes them once."""
        if not len(self.prior_classes):
            return None
        with torch.no_grad():
            log_probs = torch.log_softmax(self.imagenet(embedding.detach()).float(), dim=1)
        in_groups = self.in_groups[None]
        # log P(S_c | x) of each mapped class; log π and log(1 - π) each summed over their own classes, so both
        # stay exact near 0 and 1.
        prior = torch.logsumexp(log_probs[:, None, :].masked_fill(~self.prior_mask[None], float("-inf")), dim=2)
        inside = torch.logsumexp(log_probs.masked_fill(~in_groups, float("-inf")), dim=1)
        outside = torch.logsumexp(log_probs.masked_fill(in_groups, float("-inf")), dim=1)
        # logit g(x): how much more ImageNet puts in the groups than a uniform guess would
        gate = inside - outside - self.share_logit
        from_prior = prior - inside[:, None] + F.logsigmoid(gate)[:, None]
        return torch.cat([F.logsigmoid(-gate)[:, None], from_prior], dim=1)

    def classify(self, embedding: torch.Tensor, prior_terms: torch.Tensor | None = None) -> torch.Tensor:
        """Class log probabilities (logits without a prior) from embeddings, as head-mode training and cached
        evaluation call it; `prior_terms`: `self.prior_terms(embedding)`, if computed already."""
        logits = self.head(embedding)
        if prior_terms is None:
            prior_terms = self.prior_terms(embedding)
        if prior_terms is None:
            return logits
        learned = torch.log_softmax(logits.float(), dim=1) + prior_terms[:, :1]
        mixed = torch.logaddexp(learned.index_select(1, self.prior_classes), prior_terms[:, 1:])
        return learned.index_copy(1, self.prior_classes, mixed).to(logits.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def build_model(
    backbone: str,
    num_classes: int,
    pretrained: bool,
    priors: Sequence[Sequence[int]] = (),
    with_imagenet: bool = True,
) -> ImageClassifier:
    """A model with `num_classes` outputs; `priors` as in `ImageClassifier.set_priors` (none by default)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
    features, imagenet, spec = build_backbone(backbone, pretrained)
    model = ImageClassifier(features, spec.feature_dim, num_classes, spec, imagenet if with_imagenet else None, priors)
    with torch.no_grad():  # the learned part starts neutral between mapped classes: the prior alone tells them apart
        for index, members in enumerate(priors):
            if members:
                model.head.weight[index].zero_()
                model.head.bias[index].zero_()
    return model
