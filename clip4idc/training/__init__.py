"""Training: the two-stage loop (:mod:`.train`), its config (:mod:`.config`), the optimiser
(:mod:`.optim`), the optional attention-guidance loss (:mod:`.guidance`) and the notebooks' lesson plan
(:mod:`.recipes`)."""
