"""The network: CLIP towers and the pair encoder (:mod:`.clip`), the CLIP4IDC model (:mod:`.model`), the
caption decoder (:mod:`.decoder`) and decoding (:mod:`.decoding`), model configs (:mod:`.config`) and
batched inference (:mod:`.inference`). It imports nothing from the rest of the package but the shared
top-level modules, so it can be read, and reused, on its own."""
