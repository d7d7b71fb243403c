"""Building blocks shared by families (time embeddings, UNet, MLPs, ...)."""
