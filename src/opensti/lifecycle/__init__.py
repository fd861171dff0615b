"""Certificate lifecycle: the reconcile loop, deployment tasks (:mod:`.deploy`) and
notifications (:mod:`.notify`)."""
