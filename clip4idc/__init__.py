"""clip4idc: image difference captioning with CLIP4IDC."""
