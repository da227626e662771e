"""Writes of the classify app, one module per theme. Import the theme module you need
(``from classify.services import intake``); docs/architecture.md draws the arrows between them.

- ``projects``: creating a project with its classes.
- ``intake``: taking an upload (validate, normalise, store, deduplicate) and handing it on.
- ``queueing``: publishing the classification task, and what a dead broker means for an item.
- ``lifecycle``: the state machine's conditional updates, claims, and the sweeper.
- ``scoring``: the shared lower level: class specs, building a project's backend, loading a stored image.
- ``classification``: scoring a claimed item, routing it and recording the prediction; re-classifying.
- ``exemplars``: promoting a labelled item to an exemplar of its class.
"""
