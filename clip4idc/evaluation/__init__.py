"""Evaluation: the official protocol behind ``clip4idc eval`` (:mod:`.evaluate`), caption metrics
(:mod:`.metrics`), retrieval R@K (:mod:`.retrieval`), change types (:mod:`.change_types`), the
mean-sentence baseline (:mod:`.baseline`), result slicing and run reports (:mod:`.results`), and the
synthetic-only probes of the pair encoder (:mod:`.probes`)."""
