"""When transfer fails: domain shift, negative transfer, catastrophic forgetting.

    accuracy_under_shift   one model, the test set shifted several ways (``tk.SHIFT_KINDS``)
    compare_to_scratch     a transfer strategy against training from scratch, over seeds
    forgetting             the source task's accuracy before and after fine-tuning the backbone
"""
from __future__ import annotations

from dataclasses import dataclass

from .data import SHIFT_KINDS, Dataset, few_shot, shift
from .evaluation import SeedSummary, evaluate, over_seeds
from .experiments import run_strategy
from .models import HEAD, block_names, build_model, check_kit_model

__all__ = ["Comparison", "Forgetting", "ShiftReport", "accuracy_under_shift", "compare_to_scratch",
           "forgetting", "with_head"]


# --------------------------------------------------------------------------- domain shift
@dataclass
class ShiftReport:
    """Accuracy of one model on a test set as it is and under each shift."""

    model_name: str
    clean: float
    shifted: dict  # kind -> accuracy

    def drop(self, kind):
        """Accuracy lost under ``kind``, in points (positive = worse than unshifted)."""
        return 100 * (self.clean - self.shifted[kind])

    def __str__(self):
        lines = [f"{self.model_name}: unshifted test accuracy {self.clean:.1%}"]
        lines += [f"  {kind:<9} {acc:6.1%}  ({100 * (acc - self.clean):+.1f} points)"
                  for kind, acc in self.shifted.items()]
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def accuracy_under_shift(model, test, kinds=tuple(SHIFT_KINDS), seed=0):
    """Test accuracy of ``model`` on ``test`` and on ``shift(test, kind)`` for every kind."""
    if not isinstance(test, Dataset):
        raise TypeError(f"accuracy_under_shift shifts a tk.Dataset, got {type(test).__name__}; "
                        "pass e.g. task.test")
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    clean = evaluate(model, test).accuracy  # checks the model and the data first
    shifted = {kind: evaluate(model, shift(test, kind, seed)).accuracy for kind in kinds}
    return ShiftReport(model.name, clean, shifted)


# --------------------------------------------------------------------------- negative transfer
@dataclass
class Comparison:
    """A transfer strategy and training from scratch, same shots, seeds and epochs."""

    strategy: str
    shots: int
    transfer: SeedSummary
    scratch: SeedSummary

    @property
    def gap_points(self):
        """Mean transfer accuracy minus mean scratch accuracy, in points (< 0: transfer hurt)."""
        return 100 * (self.transfer.mean - self.scratch.mean)

    @property
    def negative(self):
        return self.gap_points < 0

    def __str__(self):
        verdict = "transfer hurt" if self.negative else "transfer helped"
        return (f"{self.shots} shots per class\n  {self.transfer}\n  {self.scratch}\n"
                f"  gap {self.gap_points:+.1f} points: {verdict}")

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def compare_to_scratch(source_weights, task, shots, strategy="feature_extraction", seeds=(0,),
                       epochs=12, learning_rate=1e-2):
    """Test accuracy of ``strategy`` from ``source_weights`` and of scratch, for each seed.

    Each seed draws its own ``shots`` examples per class from ``task.train``; both
    contenders train on the same draw with ``tk.run_strategy`` and the same settings.
    """
    def runner(name, weights):
        def run(seed):
            train = few_shot(task.train, shots, seed)
            done = run_strategy(name, train, task.val, task.num_classes,
                                source_weights=weights, epochs=epochs,
                                learning_rate=learning_rate, seed=seed)
            return evaluate(done.model, task.test)
        return run

    transfer = over_seeds(runner(strategy, source_weights), seeds, label=strategy)
    scratch = over_seeds(runner("scratch", None), seeds, label="scratch")
    return Comparison(strategy, shots, transfer, scratch)


# --------------------------------------------------------------------------- forgetting
def with_head(backbone_model, head_model, name="reassembled"):
    """A new model: ``backbone_model``'s blocks with ``head_model``'s head (weights copied)."""
    for model, what, needs in ((backbone_model, "backbone_model", ("blocks",)),
                               (head_model, "head_model", ("head",))):
        check_kit_model(model, what, needs=needs, purpose="tk.with_head joins the kit's blocks "
                        "of one model to the head of another", fix="pass models built with "
                        "tk.build_model (e.g. run.model and source.model)")
    widths = tuple(int(layer.filters) for layer in backbone_model.layers
                   if layer.name.endswith("_conv"))
    classes = int(head_model.get_layer(HEAD).units)
    reads = int(head_model.get_layer(HEAD).kernel.shape[0])
    if len(widths) != len(block_names(backbone_model)) or widths[-1:] != (reads,):
        raise ValueError(f"the head of {head_model.name!r} reads {reads} features but the backbone "
                         f"of {backbone_model.name!r} gives {widths[-1:] or 'none'}; pair models "
                         "built with the same widths (e.g. a fine-tuned copy of the source)")
    model = build_model(classes, tuple(backbone_model.inputs[0].shape[1:]), widths, name)
    for layer in model.layers:
        donor = head_model if layer.name == HEAD else backbone_model
        if layer.weights:
            layer.set_weights(donor.get_layer(layer.name).get_weights())
    return model


@dataclass
class Forgetting:
    """Source-task accuracy of the original model and of the fine-tuned backbone."""

    before: float
    after: float
    target_accuracy: float = float("nan")

    @property
    def drop_points(self):
        return 100 * (self.before - self.after)

    def __str__(self):
        return (f"source task accuracy before fine-tuning {self.before:.1%}, after "
                f"{self.after:.1%} ({100 * (self.after - self.before):+.1f} points)")

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def forgetting(source_model, tuned_model, source_test, target_accuracy=float("nan")):
    """How much of the source task a fine-tuned backbone still solves.

    The tuned backbone gets the *original* source head back (``with_head``) and is
    scored on ``source_test``; the original source model is scored on the same images.
    """
    before = evaluate(source_model, source_test).accuracy
    after = evaluate(with_head(tuned_model, source_model), source_test).accuracy
    return Forgetting(before, after, target_accuracy)
