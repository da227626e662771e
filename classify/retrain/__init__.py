"""Retraining: train a candidate model, measure it, compare it on real history, let an admin switch.

- ``data``: the training data: the project's human labels (exemplars and reviewed items) as embeddings.
- ``runs``: a training run's orchestration: its steps, starting, one step per task, the admin's decision.
- ``local``, ``custom_labels``: the steps of each kind of run.
- ``evaluation``, ``compare``: measuring a candidate, and what it would change on recent items.
- ``outcomes``: what a step returns or raises.
"""
