"""Run folders: checkpoints (``checkpoint``) and the manifest every output carries (``manifest``)."""
