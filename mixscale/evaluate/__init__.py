"""Evaluation: a model or checkpoint on a split of the shards -> ``metrics.json`` and a report.

* ``evaluate_checkpoint(checkpoint, shards, out_dir, split="test", max_items=None, ...)``
  and ``evaluate_model(model, shards, split, ...)`` (``run``): the loop and the three
  systems (the model, the predict-the-mean baseline, the uncorrected input);
* ``metrics``: pure metric functions (accuracy, macro-F1, confusion, Fréchet distance);
* ``fad``: the embeddings registry for the Fréchet audio distance;
* ``report``: ``report.md``/``report.html`` and their plots.
"""

from mixscale.evaluate.run import evaluate_checkpoint, evaluate_model

__all__ = ["evaluate_checkpoint", "evaluate_model"]
