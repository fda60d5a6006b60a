"""A predicted trace against the real one, frame by frame.

The model is given the real trace's first frame (the entry's call, with its arguments) and predicts the rest. A
frame matches when its event, its line (the entry's start-of-trace marker left off, as CWM's demo does) and its
locals as written (UNCHANGED included) are equal, and for return and exception frames its value. The end of the
trace is one more step: after the last real frame the model must end the trace.

    first_divergence: the 1-based number, in the whole real trace, of the first frame predicted wrong (the frame
                      after the last one when the model did not end there); None for an exact trace
    prefix_accuracy:  frames matched before the first divergence / real frames predicted
    exact_match:      every frame matched and the trace ended where the real one ends
"""

from __future__ import annotations

from harness.traces.format import START_MARKER, Frame

GIVEN = 1  # frames of the real trace in the prompt: the entry's call


def same_frame(predicted: Frame, real: Frame, marker: str = START_MARKER) -> bool:
    if predicted.malformed or predicted.event != real.event:
        return False
    if predicted.line.removesuffix(marker) != real.line:
        return False
    if predicted.event in ("call", "line"):
        return predicted.locals == real.locals
    return predicted.value == real.value


def difference(predicted: Frame | None, real: Frame | None) -> str:
    if real is None:
        return "the model went on where the trace ends"
    if predicted is None:
        return "the model ended the trace early"
    if predicted.malformed:
        return f"malformed frame: {predicted.error}"
    for name in ("event", "line", "locals", "value"):
        if getattr(predicted, name) != getattr(real, name):
            return f"{name} differs"
    return "line differs"


def score(real: list[Frame], predicted: list[Frame], ended: bool, marker: str = START_MARKER) -> dict:
    """The metrics (see the module's docstring) and where the prediction first went wrong."""
    target = real[GIVEN:]
    matched = 0
    while matched < len(target) and matched < len(predicted) and same_frame(predicted[matched], target[matched],
                                                                            marker):
        matched += 1
    exact = matched == len(target) and len(predicted) == len(target) and ended
    metrics = {"exact_match": 1.0 if exact else 0.0,
               "prefix_accuracy": matched / len(target) if target else 1.0,
               "first_divergence": None if exact else GIVEN + matched + 1,
               "frames_real": len(real), "frames_predicted": GIVEN + len(predicted)}
    details: dict = {"metrics": metrics,
                     "frames_matched_anywhere": sum(same_frame(p, r, marker) for p, r in zip(predicted, target))}
    if not exact:
        wrong = predicted[matched] if matched < len(predicted) else None
        expected = target[matched] if matched < len(target) else None
        details["divergence"] = {"frame": GIVEN + matched + 1, "why": difference(wrong, expected),
                                 "expected": expected.to_dict() if expected else "end of trace",
                                 "predicted": wrong.to_dict() if wrong else ("end of trace" if ended else None)}
    return details
