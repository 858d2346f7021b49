"""Training: the two-stage loop (:mod:`.train`), its config with one option group per stage
(:mod:`.config`), the two stages' losses (:mod:`.losses`), the optimiser (:mod:`.optim`) and the optional
attention-guidance loss (:mod:`.guidance`)."""
