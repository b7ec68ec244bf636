"""Our pySigma processing pipeline: for each log source category we evaluate, a rule that reads a field
our events do not carry fails with the reason (a rule that cannot be evaluated is reported, never
silently dropped). Field names need no renaming: our field dicts use Sigma's names (see `fields`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sigma.exceptions import SigmaTransformationError
from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations.base import DetectionItemTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem
from sigma.types import SigmaFieldReference

from amoskys.detections.sigma.conditions import KEYWORD_FIELD
from amoskys.detections.sigma.fields import NOT_PROVIDED_REASONS, PROVIDED


@dataclass
class FailOnUnprovidedField(DetectionItemTransformation):
    """Fails the rule when a detection item (or a `fieldref` value) names a field `category` lacks."""

    category: str = ""
    provided: frozenset[str] = frozenset()
    reasons: Mapping[str, str] = field(default_factory=dict)

    def reason(self, name: str) -> str:
        known = self.reasons.get(name)
        if known is not None:
            return f"field {name!r}: {known}"
        return (
            f"field {name!r} is not provided for {self.category} "
            f"(provided: {', '.join(sorted(self.provided))})"
        )

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> SigmaDetection | None:
        name = detection_item.field
        if name is None:
            if KEYWORD_FIELD not in self.provided:
                raise SigmaTransformationError(
                    f"keywords search {KEYWORD_FIELD}, which {self.category} events do not carry"
                )
        elif name not in self.provided:
            raise SigmaTransformationError(self.reason(name))
        for value in detection_item.value:
            if isinstance(value, SigmaFieldReference) and value.field not in self.provided:
                raise SigmaTransformationError(self.reason(value.field))
        return None


def build() -> ProcessingPipeline:
    """The pipeline applied to every rule before it is compiled."""
    items = [
        ProcessingItem(
            identifier=f"amoskys_{category}_fields",
            transformation=FailOnUnprovidedField(
                category=category,
                provided=provided,
                reasons=NOT_PROVIDED_REASONS.get(category, {}),
            ),
            rule_conditions=[LogsourceCondition(category=category)],
        )
        for category, provided in PROVIDED.items()
    ]
    return ProcessingPipeline(name="amoskys", items=items)
