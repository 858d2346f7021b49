"""The web app (:mod:`.web`, gradio): a client of the library, started by ``clip4idc app``."""
